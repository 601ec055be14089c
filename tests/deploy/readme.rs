use std::collections::BTreeSet;

use crate::support::{Ctx, assert_reported, exists, mutate, read};

/// The command lines of the ```bash blocks in the README section `title`.
pub fn commands(readme: &str, title: &str) -> Vec<String> {
    let Some(start) = readme.find(&format!("\n## {title}\n")) else {
        return Vec::new();
    };
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut out = Vec::new();
    let mut in_block = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = !in_block && line.trim() == "```bash";
            continue;
        }
        if in_block {
            let cmd = line.split(" # ").next().unwrap_or_default().trim();
            if !cmd.is_empty() && !cmd.starts_with('#') {
                out.push(cmd.to_string());
            }
        }
    }
    out
}

struct Files {
    services: BTreeSet<String>,
    profiles: BTreeSet<String>,
    default_profile: String,
    jobs: BTreeSet<String>,
    job_names: BTreeSet<String>,
    variable_keys: BTreeSet<String>,
}

fn files() -> Files {
    let doc = crate::compose::load(&read("docker-compose.yml")).expect("compose");
    let nomad: Vec<(String, String)> = crate::nomad::job_files()
        .into_iter()
        .map(|f| (f.clone(), read(&f)))
        .collect();
    let job_names = nomad
        .iter()
        .filter_map(|(_, src)| {
            src.split("job \"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_string)
        })
        .collect();
    Files {
        services: crate::compose::services(&doc).into_keys().collect(),
        profiles: crate::compose::profiles(&doc),
        default_profile: read(".env.example")
            .lines()
            .find_map(|l| l.strip_prefix("COMPOSE_PROFILES="))
            .unwrap_or_default()
            .to_string(),
        jobs: nomad.iter().map(|(f, _)| f.clone()).collect(),
        job_names,
        variable_keys: nomad
            .iter()
            .flat_map(|(_, s)| crate::nomad::variable_keys(s))
            .collect(),
    }
}

/// Everything wrong with the README's deploy sections.
fn check(readme: &str, ctx: &Ctx, files: &Files) -> Vec<String> {
    let mut f = Vec::new();
    let compose = commands(readme, "Run with Docker Compose");
    let nomad = commands(readme, "Run on Nomad");
    if compose.is_empty() || nomad.is_empty() {
        f.push(
            "README lacks the commands of \"Run with Docker Compose\" or \"Run on Nomad\"".into(),
        );
    }
    let mut profiles_used = BTreeSet::new();
    let mut jobs_run = BTreeSet::new();
    let mut policy_jobs = BTreeSet::new();
    let mut var_keys = BTreeSet::new();
    let sub = |f: &mut Vec<String>, cmd: &str, name: Option<&&str>| match name {
        Some(n) if ctx.subcommands.contains(*n) => {}
        other => f.push(format!("`{cmd}`: {other:?} is not a subcommand of orderly")),
    };
    for cmd in compose.iter().chain(&nomad) {
        let w: Vec<&str> = cmd.split_whitespace().collect();
        match w.as_slice() {
            ["cp", from, _] | ["bash", from] => {
                if !exists(from) {
                    f.push(format!("`{cmd}`: {from} does not exist"));
                }
            }
            ["curl", url] => {
                if ![
                    "http://localhost:8001/health",
                    "http://localhost:8000/health",
                ]
                .contains(url)
                {
                    f.push(format!("`{cmd}`: not a contract port's /health"));
                }
            }
            ["docker", "compose", rest @ ..] => {
                let mut rest = rest;
                let mut profile = None;
                while let ["--profile", p, tail @ ..] = rest {
                    profile = Some(*p);
                    rest = tail;
                }
                let profile = profile
                    .map(str::to_string)
                    .unwrap_or_else(|| files.default_profile.clone());
                if !files.profiles.contains(&profile) {
                    f.push(format!(
                        "`{cmd}`: no profile {profile} in docker-compose.yml"
                    ));
                }
                profiles_used.insert(profile);
                match rest {
                    ["up", "-d", "--build"] | ["down"] | ["down", "-v"] | ["ps"] => {}
                    ["logs", "-f", svc] | ["run", "--rm", svc, ..]
                        if !files.services.contains(*svc) =>
                    {
                        f.push(format!("`{cmd}`: no service {svc} in docker-compose.yml"));
                    }
                    ["logs", "-f", _] => {}
                    ["run", "--rm", _, args @ ..] => sub(&mut f, cmd, args.first()),
                    _ => f.push(format!("`{cmd}`: not a command this check knows")),
                }
            }
            ["docker", "build", "-t", _, "."]
            | ["docker", "push", _]
            | ["rm", "-r", "keys-new"] => {}
            ["cargo", "run", "--release", "--", args @ ..] => sub(&mut f, cmd, args.first()),
            ["nomad", "var", "put", path, items @ ..] => {
                if *path != "nomad/jobs/orderly" {
                    f.push(format!("`{cmd}`: the jobs read nomad/jobs/orderly"));
                }
                for item in items {
                    let (k, v) = item.split_once('=').unwrap_or((item, ""));
                    var_keys.insert(k.to_string());
                    let dir = v
                        .strip_prefix('@')
                        .map(|file| file.split('/').next().unwrap_or_default());
                    if let Some(dir) = dir
                        && !compose
                            .iter()
                            .chain(&nomad)
                            .any(|c| c.contains(&format!("--dir {dir}")))
                    {
                        f.push(format!("`{cmd}`: nothing above writes {v}"));
                    }
                }
            }
            ["nomad", "job", "run", rest @ ..] => {
                let file = rest.last().copied().unwrap_or_default();
                if !files.jobs.contains(file) {
                    f.push(format!("`{cmd}`: {file} is not a job file in deploy/nomad"));
                }
                jobs_run.insert(file.to_string());
            }
            [
                "nomad",
                "acl",
                "policy",
                "apply",
                "-namespace",
                _,
                "-job",
                job,
                _,
                file,
            ] => {
                if !exists(file) {
                    f.push(format!("`{cmd}`: {file} does not exist"));
                }
                if !files.job_names.contains(*job) {
                    f.push(format!("`{cmd}`: no job {job} in deploy/nomad"));
                }
                policy_jobs.insert(job.to_string());
            }
            _ => f.push(format!("`{cmd}`: not a command this check knows")),
        }
    }
    for p in files.profiles.difference(&profiles_used) {
        f.push(format!("README starts no `{p}` setup"));
    }
    for j in files.jobs.difference(&jobs_run) {
        f.push(format!("README runs no `nomad job run {j}`"));
    }
    for j in files.job_names.difference(&policy_jobs) {
        f.push(format!("README applies no secrets policy to {j}"));
    }
    if var_keys != files.variable_keys {
        f.push(format!(
            "`nomad var put` sets {var_keys:?}, the job templates read {:?}",
            files.variable_keys
        ));
    }
    f
}

#[test]
fn the_readme_deploy_commands_match_the_files() {
    let findings = check(&read("README.md"), &Ctx::new(), &files());
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn the_readme_check_can_fail() {
    let (ctx, files) = (Ctx::new(), files());
    let text = read("README.md");
    let bad = mutate(
        &text,
        "docker compose --profile nats up -d --build",
        "docker compose --profile natss up -d --build",
    );
    assert_reported(&check(&bad, &ctx, &files), &["no profile natss"]);
    let bad = mutate(
        &text,
        "nomad job run -var image=registry.example.com/orderly:1.0 deploy/nomad/worker.nomad.hcl",
        "nomad job run -var image=registry.example.com/orderly:1.0 deploy/nomad/workers.nomad.hcl",
    );
    let findings = check(&bad, &ctx, &files);
    assert_reported(&findings, &["workers.nomad.hcl is not a job file"]);
    assert_reported(
        &findings,
        &["README runs no `nomad job run deploy/nomad/worker.nomad.hcl`"],
    );
    let bad = mutate(&text, " redis_url=redis://10.0.0.5:6379/0", "");
    assert_reported(&check(&bad, &ctx, &files), &["`nomad var put` sets"]);
    let bad = mutate(
        &text,
        "docker compose run --rm auth user promote",
        "docker compose run --rm auth users promote",
    );
    assert_reported(
        &check(&bad, &ctx, &files),
        &["\"users\"", "not a subcommand"],
    );
    let bad = mutate(
        &text,
        "docker compose logs -f orders",
        "docker compose logs -f order",
    );
    assert_reported(&check(&bad, &ctx, &files), &["no service order "]);
}
