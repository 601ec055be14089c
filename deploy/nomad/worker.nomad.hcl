# orderly worker: runs process_order jobs (payment, PENDING -> PAID) (README.md, "Run on Nomad").
# nomad job run -var image=REGISTRY/orderly:TAG deploy/nomad/worker.nomad.hcl

variable "image" {
  type        = string
  default     = "orderly:latest"
  description = "The orderly image (one image for every role)"
}

job "orderly-worker" {
  type = "service"

  # An allocation is healthy when the ops listener's /health and /ready pass
  # (/ready: the bus, the orders database and the job queue).
  update {
    max_parallel      = 1
    canary            = 1
    auto_promote      = true
    auto_revert       = true
    health_check      = "checks"
    min_healthy_time  = "30s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
  }

  group "worker" {
    count = 2

    network {
      port "ops" {
        to = 9090
      }
    }

    # /health, /ready and /metrics on the ops listener (ORDERLY_OPS_BIND).
    service {
      name     = "orderly-worker-ops"
      provider = "nomad"
      port     = "ops"
      # deploy/prometheus/nomad.yml scrapes every service tagged `metrics`.
      tags     = ["metrics"]

      check {
        name     = "health"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
      }

      check {
        name     = "ready"
        type     = "http"
        path     = "/ready"
        interval = "10s"
        timeout  = "3s"
      }
    }

    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "delay"
    }

    task "worker" {
      driver = "docker"

      # Deregister the ops service, then SIGTERM: the worker stops taking jobs,
      # lets the ones in hand finish for its stop grace (WORKER_STOP_GRACE,
      # 15 s) and hands the rest back to the queue; the ops listener drains
      # for at most 20 s meanwhile. The kill (default 5 s) comes after both.
      shutdown_delay = "5s"
      kill_timeout   = "25s"

      config {
        image = var.image
        args  = ["worker"]
        ports = ["ops"]
      }

      env {
        ORDERLY_OPS_BIND = "0.0.0.0:9090"
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
