//! `ferry-bench-pbkdf2 PRF ITERATIONS COUNT THREADS [KERNEL]`: runs COUNT PBKDF2
//! derivations (one verification each: 32-byte output, 16-byte salt) split over THREADS
//! threads, and prints `verifications_per_second` on stdout.
//!
//! KERNEL is `scalar` (one derivation at a time, `pbkdf2::derive`: the default) or a lane
//! kernel, `avx2` or `avx512` (batches of 64 derivations through
//! `lanes::derive_batch_with`). A kernel the CPU lacks prints `unavailable`.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use ferry_passwords::lanes::{derive_batch_with, Derivation, Kernel};
use ferry_passwords::{pbkdf2, Prf};

/// Derivations per batch handed to a lane kernel.
const BATCH: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (prf, iterations, count, threads, kernel) = match &args[..] {
        [_, prf, iterations, count, threads] => (prf, iterations, count, threads, "scalar"),
        [_, prf, iterations, count, threads, kernel] => {
            (prf, iterations, count, threads, kernel.as_str())
        }
        _ => panic!(
            "usage: ferry-bench-pbkdf2 SHA1|SHA256|SHA512 ITERATIONS COUNT THREADS [scalar|avx2|avx512]"
        ),
    };
    let prf = Prf::from_name(prf).expect("SHA1, SHA256 or SHA512");
    let iterations: u32 = iterations.parse().unwrap();
    let count: usize = count.parse().unwrap();
    let threads: usize = threads.parse().unwrap();
    let kernel = Kernel::from_name(kernel).expect("scalar, avx2 or avx512");
    if !kernel.is_available() {
        println!("unavailable");
        return;
    }
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mine: Vec<usize> = (t..count).step_by(threads).collect();
                if kernel == Kernel::Scalar {
                    let mut out = [0u8; 32];
                    for i in mine {
                        let salt = [i as u8; 16];
                        pbkdf2::derive(prf, b"my password", &salt, iterations, &mut out);
                        std::hint::black_box(&out);
                    }
                    return;
                }
                for group in mine.chunks(BATCH) {
                    let salts: Vec<[u8; 16]> = group.iter().map(|&i| [i as u8; 16]).collect();
                    let mut outs = vec![[0u8; 32]; group.len()];
                    let mut batch: Vec<Derivation> = salts
                        .iter()
                        .zip(outs.iter_mut())
                        .map(|(salt, out)| Derivation {
                            password: b"my password",
                            salt,
                            out,
                        })
                        .collect();
                    derive_batch_with(kernel, prf, iterations, &mut batch);
                    std::hint::black_box(&outs);
                }
            });
        }
    });
    println!("{}", count as f64 / started.elapsed().as_secs_f64());
}
