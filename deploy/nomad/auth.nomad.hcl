# orderly auth: users, passwords, tokens (README.md, "Run on Nomad").
# nomad job run -var image=REGISTRY/orderly:TAG deploy/nomad/auth.nomad.hcl

variable "image" {
  type        = string
  default     = "orderly:latest"
  description = "The orderly image (one image for every role)"
}

job "orderly-auth" {
  type = "service"

  # A new version starts as one canary; it is promoted once its checks pass and
  # rolled back to the last good version when they do not.
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

  group "auth" {
    count = 2

    network {
      port "http" {
        to = 8001
      }
    }

    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "delay"
    }

    service {
      name     = "orderly-auth"
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

      check {
        name     = "ready"
        type     = "http"
        path     = "/ready"
        interval = "10s"
        timeout  = "3s"
      }
    }

    task "auth" {
      driver = "docker"

      # Deregister from service discovery first, so the load balancer stops
      # sending requests, then SIGTERM: the server drains in-flight requests
      # for at most 20 s, so the kill (default 5 s) comes after that.
      shutdown_delay = "5s"
      kill_timeout   = "25s"

      config {
        image = var.image
        args  = ["auth"]
        ports = ["http"]
      }

      env {
        AUTH_BIND             = "0.0.0.0:8001"
        AUTH_PRIVATE_KEY_PATH = "/secrets/private.pem"
        AUTH_PUBLIC_KEY_PATH  = "/secrets/public.pem"
        RUST_LOG              = "info"
      }

      # Secrets come from the Nomad variable nomad/jobs/orderly (README); the
      # files belong to the image's non-root user (uid 10001).
      template {
        destination = "secrets/orderly.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
        {{ with nomadVar "nomad/jobs/orderly" }}
        AUTH_DATABASE_URL={{ .auth_database_url }}
        {{ end }}
        EOT
      }

      template {
        destination = "secrets/private.pem"
        perms       = "0600"
        uid         = 10001
        gid         = 10001
        change_mode = "restart"
        data        = <<-EOT
        {{ with nomadVar "nomad/jobs/orderly" }}{{ .auth_private_key }}{{ end }}
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

      # Password hashing runs one Argon2id hash (19 MiB) per core at once, and
      # the cores it counts are the ones it may run on: reserving them bounds
      # the hashing memory, which on a large host would outgrow any fixed limit.
      # memory = 128 MiB baseline + 2 cores x 19 MiB, rounded up.
      resources {
        cores  = 2
        memory = 192
      }
    }
  }
}
