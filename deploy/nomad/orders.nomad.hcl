# orderly orders: the REST API and its outbox relay (README.md, "Run on Nomad").
# nomad job run -var image=REGISTRY/orderly:TAG deploy/nomad/orders.nomad.hcl

variable "image" {
  type        = string
  default     = "orderly:latest"
  description = "The orderly image (one image for every role)"
}

job "orderly-orders" {
  type = "service"

  update {
    max_parallel      = 1
    canary            = 1
    auto_promote      = true
    auto_revert       = true
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
  }

  group "orders" {
    count = 2

    network {
      port "http" {
        to = 8000
      }
    }

    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "delay"
    }

    service {
      name     = "orderly-orders"
      provider = "nomad"
      port     = "http"
      # deploy/prometheus/nomad.yml scrapes every service tagged `metrics`.
      tags     = ["metrics"]

      check {
        name     = "health"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
      }

      # /ready checks the database and Redis: a canary that cannot reach them
      # never takes traffic. The bus is reported but not required: the outbox
      # keeps events while it is away (alert OrderlyOutboxLag).
      check {
        name     = "ready"
        type     = "http"
        path     = "/ready"
        interval = "10s"
        timeout  = "3s"
      }
    }

    task "orders" {
      driver = "docker"

      # Deregister from service discovery first, so the load balancer stops
      # sending requests, then SIGTERM: the server drains in-flight requests
      # for at most 20 s, so the kill (default 5 s) comes after that.
      shutdown_delay = "5s"
      kill_timeout   = "25s"

      config {
        image = var.image
        args  = ["orders"]
        ports = ["http"]
      }

      env {
        ORDERS_BIND            = "0.0.0.0:8000"
        ORDERS_PUBLIC_KEY_PATH = "/secrets/public.pem"
        BUS                    = "kafka"
        JOB_QUEUE              = "redis"
        RUST_LOG               = "info"
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
        {{ with nomadService "orderly-auth" }}{{ with index . 0 }}ORDERS_REVOKED_TOKENS_URL=http://{{ .Address }}:{{ .Port }}/auth/revoked-tokens{{ end }}{{ end }}
        EOT
      }

      template {
        destination = "secrets/public.pem"
        perms       = "0644"
        uid         = 10001
        gid         = 10001
        change_mode = "restart"
        data        = <<-EOT
        {{ with nomadVar "nomad/jobs/orderly" }}{{ .auth_public_key }}{{ end }}
        EOT
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
