//! The fuzz target's property (bus/fuzz/fuzz_targets/parser.rs), run on stable
//! Rust in every test run: coverage-guided fuzzing needs a nightly toolchain,
//! which CI's machine does not have, so CI runs the same checks over a bounded,
//! seeded stream of mutated protocol input instead.

use orderly_bus::wire::cmd::Command;
use orderly_bus::wire::parser::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Ops = Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>;

fn run(data: &[u8], chunk: usize) -> (Ops, bool) {
    let mut parser = Parser::with_limits(256, 4096);
    let mut buf = Vec::new();
    let mut ops = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match parser.parse(&buf) {
                Ok(Some(p)) => {
                    assert!(p.len <= buf.len(), "took more than it was given");
                    let _ = Command::from_op(p.op);
                    ops.push((
                        p.op.args.to_vec(),
                        p.op.headers.to_vec(),
                        p.op.payload.to_vec(),
                    ));
                    buf.drain(..p.len);
                }
                Ok(None) => break,
                Err(_) => return (ops, true),
            }
        }
    }
    (ops, false)
}

const SEEDS: &[&[u8]] = &[
    b"PUB a.b 5\r\nhello\r\n",
    b"PUB a.b reply.1 0\r\n\r\n",
    b"HPUB a.b 22 27\r\nNATS/1.0\r\nA: b\r\n\r\nhello\r\n",
    b"SUB a.* q 1\r\n",
    b"SUB > 2\r\n",
    b"UNSUB 1 10\r\n",
    b"PING\r\n",
    b"PONG\r\n",
    b"CONNECT {\"verbose\":false,\"pedantic\":true,\"headers\":true}\r\n",
    b"MSG a 1 3\r\nabc\r\n",
    b"-ERR 'x'\r\n",
    b"+OK\r\n",
];

fn mutated(rng: &mut StdRng) -> Vec<u8> {
    let mut input = Vec::new();
    for _ in 0..rng.random_range(1..6) {
        input.extend_from_slice(SEEDS[rng.random_range(0..SEEDS.len())]);
    }
    for _ in 0..rng.random_range(0..8) {
        if input.is_empty() {
            break;
        }
        let at = rng.random_range(0..input.len());
        match rng.random_range(0..5) {
            0 => input[at] = rng.random(),
            1 => {
                input.remove(at);
            }
            2 => input.insert(
                at,
                *b" \r\n0123456789*>."
                    .get(rng.random_range(0..17))
                    .unwrap_or(&b' '),
            ),
            3 => input.truncate(at),
            _ => {
                let digits = rng.random_range(0..100_000u32).to_string();
                input.splice(at..at, digits.bytes());
            }
        }
    }
    input
}

#[test]
fn the_parser_survives_mutated_protocol_input_whole_or_split() {
    let seed: u64 = std::env::var("ORDERLY_PARSER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0005_eed0_fa11);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut parsed_ops = 0usize;
    let mut errors = 0usize;
    for _ in 0..100_000 {
        let input = mutated(&mut rng);
        let whole = run(&input, input.len().max(1));
        let chunk = rng.random_range(1..18);
        let split = run(&input, chunk);
        assert_eq!(
            whole,
            split,
            "seed {seed}, chunk {chunk}, input {:?}",
            String::from_utf8_lossy(&input)
        );
        parsed_ops += whole.0.len();
        errors += usize::from(whole.1);
    }
    // Both outcomes must be exercised, or the mutations are too tame or too wild.
    assert!(
        parsed_ops > 1_000 && errors > 1_000,
        "ops {parsed_ops}, errors {errors}"
    );
}

#[test]
fn the_parser_survives_random_bytes() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..20_000 {
        let len = rng.random_range(0..300);
        let input: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let whole = run(&input, input.len().max(1));
        let split = run(&input, rng.random_range(1..18));
        assert_eq!(whole, split);
    }
}
