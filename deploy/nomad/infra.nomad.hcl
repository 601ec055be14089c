# PostgreSQL (auth and orders), Redis and a one-node Kafka (KRaft) for trying
# orderly on Nomad. Data lives on the allocation's sticky disk: enough for a
# trial, not for production, where these are external services (managed
# PostgreSQL, Redis and Kafka). Either way the orderly jobs only see the URLs in
# the Nomad variable nomad/jobs/orderly (README.md, "Run on Nomad").
# Static ports, so the URLs are known: 5432 (auth db), 5433 (orders db), 6379, 9092.
# nomad job run deploy/nomad/infra.nomad.hcl

job "orderly-infra" {
  type = "service"

  group "postgres_auth" {
    network {
      port "db" {
        static = 5432
        to     = 5432
      }
    }

    ephemeral_disk {
      sticky  = true
      migrate = true
      size    = 2048
    }

    restart {
      attempts = 5
      interval = "10m"
      delay    = "15s"
      mode     = "delay"
    }

    service {
      name     = "orderly-postgres-auth"
      provider = "nomad"
      port     = "db"

      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "postgres" {
      driver = "docker"

      config {
        image = "postgres:16-alpine"
        ports = ["db"]
      }

      env {
        POSTGRES_USER = "postgres"
        POSTGRES_DB   = "authdb"
        PGDATA        = "/alloc/data/pgdata"
      }

      template {
        destination = "secrets/postgres.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
        {{ with nomadVar "nomad/jobs/orderly" }}
        POSTGRES_PASSWORD={{ .postgres_auth_password }}
        {{ end }}
        EOT
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }

  group "postgres_orders" {
    network {
      port "db" {
        static = 5433
        to     = 5432
      }
    }

    ephemeral_disk {
      sticky  = true
      migrate = true
      size    = 2048
    }

    restart {
      attempts = 5
      interval = "10m"
      delay    = "15s"
      mode     = "delay"
    }

    service {
      name     = "orderly-postgres-orders"
      provider = "nomad"
      port     = "db"

      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "postgres" {
      driver = "docker"

      config {
        image = "postgres:16-alpine"
        ports = ["db"]
      }

      env {
        POSTGRES_USER = "postgres"
        POSTGRES_DB   = "ordersdb"
        PGDATA        = "/alloc/data/pgdata"
      }

      template {
        destination = "secrets/postgres.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
        {{ with nomadVar "nomad/jobs/orderly" }}
        POSTGRES_PASSWORD={{ .postgres_orders_password }}
        {{ end }}
        EOT
      }

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }

  group "redis" {
    network {
      port "redis" {
        static = 6379
        to     = 6379
      }
    }

    ephemeral_disk {
      sticky  = true
      migrate = true
      size    = 1024
    }

    restart {
      attempts = 5
      interval = "10m"
      delay    = "15s"
      mode     = "delay"
    }

    service {
      name     = "orderly-redis"
      provider = "nomad"
      port     = "redis"

      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "redis" {
      driver = "docker"

      config {
        image = "redis:7-alpine"
        args  = ["redis-server", "--appendonly", "yes", "--dir", "/alloc/data"]
        ports = ["redis"]
      }

      resources {
        cpu    = 300
        memory = 256
      }
    }
  }

  group "kafka" {
    network {
      port "kafka" {
        static = 9092
        to     = 9092
      }
    }

    ephemeral_disk {
      sticky  = true
      migrate = true
      size    = 4096
    }

    restart {
      attempts = 5
      interval = "10m"
      delay    = "30s"
      mode     = "delay"
    }

    service {
      name     = "orderly-kafka"
      provider = "nomad"
      port     = "kafka"

      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "kafka" {
      driver = "docker"

      config {
        image = "apache/kafka:3.9.1"
        ports = ["kafka"]
      }

      # One node, broker and controller, no ZooKeeper. Clients are told the
      # node's address (NOMAD_ADDR_kafka), so they reach it from other hosts.
      env {
        CLUSTER_ID                                     = "sn3hlLp5QXaW8n9oveKbdg"
        KAFKA_NODE_ID                                  = "1"
        KAFKA_PROCESS_ROLES                            = "broker,controller"
        KAFKA_LISTENERS                                = "PLAINTEXT://:9092,CONTROLLER://:9093"
        KAFKA_ADVERTISED_LISTENERS                     = "PLAINTEXT://${NOMAD_ADDR_kafka}"
        KAFKA_CONTROLLER_LISTENER_NAMES                = "CONTROLLER"
        KAFKA_LISTENER_SECURITY_PROTOCOL_MAP           = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        KAFKA_CONTROLLER_QUORUM_VOTERS                 = "1@localhost:9093"
        KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR         = "1"
        KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR = "1"
        KAFKA_TRANSACTION_STATE_LOG_MIN_ISR            = "1"
        KAFKA_NUM_PARTITIONS                           = "3"
        KAFKA_LOG_DIRS                                 = "/alloc/data/kafka"
      }

      resources {
        cpu    = 1000
        memory = 1024
      }
    }
  }
}
