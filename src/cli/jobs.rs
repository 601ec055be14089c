//! `orderly jobs …`: inspects the job queue through the port, so the same for
//! the embedded and the Redis queue.

use anyhow::Result;
use clap::Subcommand;

use orderly_bus::schema::jobs::PROCESS_ORDER;
use orderly_core::config::Settings;

use crate::wiring;

#[derive(Subcommand, Clone, PartialEq, Eq)]
pub enum JobsAction {
    /// Waiting, running, retrying and dead jobs
    Stats,
    /// The dead letters with their error history
    Dead {
        /// Show at most this many
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Run a dead job again (fresh attempt count)
    Requeue { id: String },
    /// Delete every dead job
    PurgeDead,
}

pub async fn run(settings: &Settings, action: &JobsAction) -> Result<()> {
    let queue = wiring::open_queue_for_inspection(settings).await?;
    let q = PROCESS_ORDER;
    match action {
        JobsAction::Stats => {
            let s = queue.stats(q).await?;
            println!("queue {q}:");
            println!("  waiting   {:>8}  (including retrying)", s.waiting);
            println!("  running   {:>8}", s.running);
            println!("  retrying  {:>8}", s.retrying);
            println!("  dead      {:>8}", s.dead);
        }
        JobsAction::Dead { limit } => {
            let dead = queue.dead_letters(q, *limit).await?;
            if dead.is_empty() {
                println!("no dead jobs in {q}");
            }
            for d in dead {
                println!("{}  attempts: {}", d.id, d.attempts);
                println!("  payload: {}", String::from_utf8_lossy(&d.payload));
                for (i, e) in d.errors.iter().enumerate() {
                    println!("  error {}: {e}", i + 1);
                }
            }
        }
        JobsAction::Requeue { id } => {
            if queue.requeue_dead(q, id).await? {
                println!("requeued {id}");
            } else {
                anyhow::bail!("no dead job {id:?} in {q}");
            }
        }
        JobsAction::PurgeDead => {
            let n = queue.purge_dead(q).await?;
            println!("purged {n} dead jobs from {q}");
        }
    }
    Ok(())
}
