# Lets an orderly job read the shared variable nomad/jobs/orderly (a job reads
# only its own nomad/jobs/<job id> by default). Needed when ACLs are enabled:
#   nomad acl policy apply -namespace default -job orderly-auth orderly-auth-secrets deploy/nomad/secrets.policy.hcl
# (README.md, "Run on Nomad", applies it to every orderly job.)
namespace "default" {
  variables {
    path "nomad/jobs/orderly" {
      capabilities = ["read"]
    }
  }
}
