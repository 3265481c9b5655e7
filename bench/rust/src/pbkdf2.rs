//! `ferry-bench-pbkdf2 PRF ITERATIONS COUNT THREADS`: runs COUNT PBKDF2 derivations (one
//! verification each: 32-byte output, 16-byte salt) split over THREADS threads, and prints
//! `verifications_per_second` on stdout.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use ferry_passwords::{pbkdf2, Prf};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, prf, iterations, count, threads] = &args[..] else {
        panic!("usage: ferry-bench-pbkdf2 SHA1|SHA256|SHA512 ITERATIONS COUNT THREADS");
    };
    let prf = Prf::from_name(prf).expect("SHA1, SHA256 or SHA512");
    let iterations: u32 = iterations.parse().unwrap();
    let count: usize = count.parse().unwrap();
    let threads: usize = threads.parse().unwrap();
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut out = [0u8; 32];
                for i in (t..count).step_by(threads) {
                    let salt = [i as u8; 16];
                    pbkdf2::derive(prf, b"my password", &salt, iterations, &mut out);
                    std::hint::black_box(&out);
                }
            });
        }
    });
    println!("{}", count as f64 / started.elapsed().as_secs_f64());
}
