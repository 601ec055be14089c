//! The broker's own share of publish → deliver latency: a blocking raw-socket
//! client (no async runtime, no client library) sends `PUB` on one connection
//! and waits for the `MSG` on another, one message at a time; targets are
//! interleaved round by round.
//!
//! ```text
//! cargo run --release -p orderly-bench --example wire_rtt -- \
//!     --rounds 5 --count 20000 nats=127.0.0.1:4222 orderly=127.0.0.1:4223
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use orderly_bench::report::micros_histogram;

struct Pair {
    publisher: TcpStream,
    subscriber: BufReader<TcpStream>,
}

fn connect(addr: &str) -> Result<TcpStream> {
    let s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true)?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut info = String::new();
    r.read_line(&mut info)?;
    if !info.starts_with("INFO ") {
        bail!("{addr}: no INFO, got {info:?}");
    }
    (&s).write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")?;
    Ok(s)
}

/// Reads lines up to the `PONG` after our `PING` (the server has handled all before it).
fn sync(r: &mut BufReader<TcpStream>) -> Result<()> {
    r.get_ref().write_all(b"PING\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            bail!("connection closed");
        }
        if line == "PONG\r\n" {
            return Ok(());
        }
    }
}

impl Pair {
    fn open(addr: &str, subject: &str) -> Result<Self> {
        let publisher = connect(addr)?;
        let sub = connect(addr)?;
        (&sub).write_all(format!("SUB {subject} 1\r\n").as_bytes())?;
        let mut subscriber = BufReader::new(sub);
        sync(&mut subscriber)?;
        Ok(Self {
            publisher,
            subscriber,
        })
    }

    /// One round trip: µs from writing the `PUB` to reading its `MSG` whole.
    fn once(&mut self, frame: &[u8], payload: usize, line: &mut String) -> Result<u64> {
        let start = Instant::now();
        self.publisher.write_all(frame)?;
        loop {
            line.clear();
            if self.subscriber.read_line(line)? == 0 {
                bail!("connection closed");
            }
            match line.as_str() {
                // The server's keep-alive.
                "PING\r\n" => self.subscriber.get_ref().write_all(b"PONG\r\n")?,
                l if l.starts_with("MSG ") => break,
                l => bail!("expected MSG, got {l:?}"),
            }
        }
        let mut body = vec![0u8; payload + 2];
        self.subscriber.read_exact(&mut body)?;
        Ok(start.elapsed().as_micros().max(1) as u64)
    }
}

fn main() -> Result<()> {
    let mut rounds = 5usize;
    let mut count = 20_000usize;
    let mut targets: Vec<(String, String)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().context("--rounds N")?.parse()?,
            "--count" => count = args.next().context("--count N")?.parse()?,
            t => match t.split_once('=') {
                Some((name, addr)) => targets.push((name.into(), addr.into())),
                None => bail!("usage: wire_rtt [--rounds N] [--count N] name=host:port …"),
            },
        }
    }
    let payload = 128;
    let subject = format!("rtt.{}", std::process::id());
    let frame = [
        format!("PUB {subject} {payload}\r\n").into_bytes(),
        vec![b'x'; payload],
        b"\r\n".to_vec(),
    ]
    .concat();
    let mut pairs = targets
        .iter()
        .map(|(_, addr)| Pair::open(addr, &subject))
        .collect::<Result<Vec<_>>>()?;
    let mut hists: Vec<_> = targets.iter().map(|_| micros_histogram()).collect();
    let mut line = String::new();
    for round in 0..rounds {
        for (i, pair) in pairs.iter_mut().enumerate() {
            let mut h = micros_histogram();
            // Warm-up, not recorded.
            for _ in 0..count / 10 {
                pair.once(&frame, payload, &mut line)?;
            }
            for _ in 0..count {
                h.record(pair.once(&frame, payload, &mut line)?)?;
            }
            eprintln!(
                "round {round} {:>8}: p50 {} µs p99 {} µs",
                targets[i].0,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99)
            );
            hists[i].add(&h)?;
        }
    }
    println!("| target | p50 µs | p90 µs | p99 µs | p99.9 µs |");
    println!("|---|--:|--:|--:|--:|");
    for (i, (name, _)) in targets.iter().enumerate() {
        let h = &hists[i];
        println!(
            "| {name} | {} | {} | {} | {} |",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999)
        );
    }
    Ok(())
}
