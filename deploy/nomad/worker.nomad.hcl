# orderly worker: runs process_order jobs (payment, PENDING -> PAID) (README.md, "Run on Nomad").
# nomad job run -var image=REGISTRY/orderly:TAG deploy/nomad/worker.nomad.hcl

variable "image" {
  type        = string
  default     = "orderly:latest"
  description = "The orderly image (one image for every role)"
}

job "orderly-worker" {
  type = "service"

  # No HTTP port, so no service registration: an allocation is healthy when its
  # task has kept running for min_healthy_time (a task that cannot reach the bus
  # or the queue exits or keeps retrying, and the restart policy takes over).
  update {
    max_parallel      = 1
    canary            = 1
    auto_promote      = true
    auto_revert       = true
    health_check      = "task_states"
    min_healthy_time  = "30s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
  }

  group "worker" {
    count = 2

    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "delay"
    }

    task "worker" {
      driver = "docker"

      # Let a job in hand finish (the worker's payment takes 2 s).
      kill_timeout = "30s"

      config {
        image = var.image
        args  = ["worker"]
      }

      env {
        BUS                = "kafka"
        JOB_QUEUE          = "redis"
        WORKER_CONCURRENCY = "4"
        RUST_LOG           = "info"
      }

      template {
        destination = "secrets/orderly.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
        {{ with nomadVar "nomad/jobs/orderly" }}
        ORDERS_DATABASE_URL={{ .orders_database_url }}
        REDIS_URL={{ .redis_url }}
        KAFKA_BOOTSTRAP_SERVERS={{ .kafka_bootstrap_servers }}
        {{ end }}
        EOT
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
