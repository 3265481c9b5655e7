//! The lane kernels against the scalar path and the `pbkdf2` crate: every PRF, 1 to 9
//! derivations per batch (and batches of more than one group), mixed password and salt
//! lengths, passwords longer than a hash block, outputs longer than one digest, 1 to 17
//! iterations and a large count. Each kernel is forced in its own test, named after it;
//! what ran, and a kernel the CPU lacks, are written to the test's output (straight to
//! stderr, which the test harness does not capture).

use std::io::Write as _;

use ferry_passwords::lanes::{derive_batch, derive_batch_with, Derivation, Kernel};
use ferry_passwords::Prf;
use hmac::Hmac;
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};

/// What the `pbkdf2` crate derives (the reference, independent of ferry's code).
/// A line in the test output even when the harness captures it.
fn say(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn reference(prf: Prf, password: &[u8], salt: &[u8], iterations: u32, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    match prf {
        Prf::Sha1 => pbkdf2::pbkdf2::<Hmac<Sha1>>(password, salt, iterations, &mut out),
        Prf::Sha256 => pbkdf2::pbkdf2::<Hmac<Sha256>>(password, salt, iterations, &mut out),
        Prf::Sha384 => pbkdf2::pbkdf2::<Hmac<Sha384>>(password, salt, iterations, &mut out),
        Prf::Sha512 => pbkdf2::pbkdf2::<Hmac<Sha512>>(password, salt, iterations, &mut out),
    }
    .unwrap();
    out
}

/// `count` derivations whose passwords, salts and output lengths all differ: empty,
/// short, exactly a block, longer than a SHA-512 block.
fn inputs(count: usize, seed: usize) -> Vec<(Vec<u8>, Vec<u8>, usize)> {
    const PASSWORD_LENGTHS: [usize; 9] = [0, 1, 11, 63, 64, 65, 128, 129, 300];
    const SALT_LENGTHS: [usize; 5] = [0, 16, 5, 100, 200];
    const OUT_LENGTHS: [usize; 7] = [32, 20, 16, 64, 33, 100, 129];
    (0..count)
        .map(|i| {
            let k = i + seed;
            let password = (0..PASSWORD_LENGTHS[k % 9])
                .map(|b| (b * 7 + k) as u8)
                .collect();
            let salt = (0..SALT_LENGTHS[k % 5])
                .map(|b| (b * 13 + k) as u8)
                .collect();
            (password, salt, OUT_LENGTHS[k % 7])
        })
        .collect()
}

fn batch_of(
    kernel: Kernel,
    prf: Prf,
    iterations: u32,
    inputs: &[(Vec<u8>, Vec<u8>, usize)],
) -> Vec<Vec<u8>> {
    let mut outs: Vec<Vec<u8>> = inputs.iter().map(|(_, _, len)| vec![0u8; *len]).collect();
    let mut batch: Vec<Derivation> = inputs
        .iter()
        .zip(outs.iter_mut())
        .map(|((password, salt, _), out)| Derivation {
            password,
            salt,
            out,
        })
        .collect();
    derive_batch_with(kernel, prf, iterations, &mut batch);
    outs
}

const PRFS: [Prf; 4] = [Prf::Sha1, Prf::Sha256, Prf::Sha384, Prf::Sha512];

/// Runs the whole matrix on `kernel`, or says that the CPU lacks it.
fn agrees_with_the_reference(kernel: Kernel) {
    if !kernel.is_available() {
        say(format_args!("{kernel}: not run, this CPU lacks it"));
        return;
    }
    let mut checked = 0;
    for prf in PRFS {
        for count in 1..=9 {
            for iterations in 1..=17 {
                let inputs = inputs(count, iterations as usize + count);
                let outs = batch_of(kernel, prf, iterations, &inputs);
                for ((password, salt, len), out) in inputs.iter().zip(&outs) {
                    let want = reference(prf, password, salt, iterations, *len);
                    assert_eq!(
                        out, &want,
                        "{kernel} {prf}: {count} lanes, {iterations} iterations, password of {} bytes, salt of {}, key of {len}",
                        password.len(),
                        salt.len()
                    );
                    checked += 1;
                }
            }
        }
    }
    say(format_args!(
        "{kernel}: {checked} derivations agree with the pbkdf2 crate"
    ));
}

#[test]
fn scalar_kernel_agrees_with_the_pbkdf2_crate() {
    agrees_with_the_reference(Kernel::Scalar);
}

#[test]
fn avx2_kernel_agrees_with_the_pbkdf2_crate() {
    agrees_with_the_reference(Kernel::Avx2);
}

#[test]
fn avx512_kernel_agrees_with_the_pbkdf2_crate() {
    agrees_with_the_reference(Kernel::Avx512);
}

/// Batches of several groups (more derivations than lanes, up to 16-lane SHA-256 and
/// SHA-1 three times over) at a large iteration count, on every kernel the CPU has,
/// against the scalar path.
#[test]
fn many_groups_at_a_large_iteration_count_agree_across_kernels() {
    let inputs = inputs(37, 3);
    for prf in [Prf::Sha1, Prf::Sha256, Prf::Sha512] {
        let scalar = batch_of(Kernel::Scalar, prf, 10_000, &inputs);
        for (i, (password, salt, len)) in inputs.iter().enumerate().step_by(9) {
            assert_eq!(
                scalar[i],
                reference(prf, password, salt, 10_000, *len),
                "{prf} scalar"
            );
        }
        for kernel in Kernel::available() {
            assert_eq!(
                batch_of(kernel, prf, 10_000, &inputs),
                scalar,
                "{kernel} {prf} at 10,000 iterations"
            );
            say(format_args!(
                "{kernel} {prf}: 37 derivations at 10,000 iterations agree"
            ));
        }
    }
}

/// RFC 6070's SHA-1 vectors and the published PBKDF2-HMAC-SHA256/SHA512 vectors for
/// "password"/"salt", on every kernel, in one batch beside other derivations.
#[test]
fn published_vectors_in_a_batch() {
    let cases: [(Prf, u32, &str); 4] = [
        (Prf::Sha1, 1, "0c60c80f961f0e71f3a9b524af6012062fe037a6"),
        (Prf::Sha1, 4096, "4b007901b765489abead49d926f721d065a429c1"),
        (Prf::Sha256, 4096, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"),
        (
            Prf::Sha512,
            4096,
            "d197b1b33db0143e018b12f3d1d1479e6cdebdcc97c5c0f87f6902e072f457b5143f30602641b3d55cd335988cb36b84376060ecd532e039b742a239434af2d5",
        ),
    ];
    for kernel in Kernel::available() {
        for (prf, iterations, hex) in cases {
            let want: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let mut inputs = inputs(5, 1);
            inputs.insert(2, (b"password".to_vec(), b"salt".to_vec(), want.len()));
            let outs = batch_of(kernel, prf, iterations, &inputs);
            assert_eq!(outs[2], want, "{kernel} {prf} {iterations}");
        }
    }
}

#[test]
fn the_default_kernel_is_the_widest_the_cpu_has() {
    let widest = *Kernel::available().last().unwrap();
    if std::env::var_os(ferry_passwords::lanes::KERNEL_VARIABLE).is_none() {
        assert_eq!(Kernel::best_for(Prf::Sha512), widest);
    }
    assert_eq!(Kernel::best_for(Prf::Sha384), Kernel::Scalar);
    say(format_args!(
        "this CPU runs: {:?}; batches use {widest}",
        Kernel::available()
    ));
    // derive_batch itself agrees with the reference.
    let inputs = inputs(6, 0);
    let mut outs: Vec<Vec<u8>> = inputs.iter().map(|(_, _, l)| vec![0u8; *l]).collect();
    let mut batch: Vec<Derivation> = inputs
        .iter()
        .zip(outs.iter_mut())
        .map(|((p, s, _), out)| Derivation {
            password: p,
            salt: s,
            out,
        })
        .collect();
    derive_batch(Prf::Sha512, 3, &mut batch);
    for ((p, s, l), out) in inputs.iter().zip(&outs) {
        assert_eq!(out, &reference(Prf::Sha512, p, s, 3, *l));
    }
}
