//! PBKDF2 over many independent derivations at once, in SIMD lanes.
//!
//! SHA-512 has no instructions of its own on x86, so one derivation at a time runs at the
//! speed of its scalar compression. Derivations that share a PRF and an iteration count
//! can run side by side instead, one per lane of a vector register: 4 SHA-512 (or 8
//! SHA-256 and SHA-1) in AVX2, 8 (or 16) in AVX-512. [`derive_batch`] takes any number of
//! them and picks the widest [`Kernel`] the CPU has ([`Kernel::best_for`]), falling back
//! to the scalar [`crate::pbkdf2`] path, which is also what a batch of one costs.
//!
//! Group work by PRF and iteration count before calling: every lane of a batch runs the
//! same number of iterations, so nothing finishes early and idles.
//!
//! ```
//! use ferry_passwords::lanes::{derive_batch, Derivation};
//! use ferry_passwords::{pbkdf2, Prf};
//!
//! let codes = ["BCDFG-HJKMN", "23456-789BC", "QRSTV-WXYZ2"];
//! let mut outs = [[0u8; 32]; 3];
//! let mut batch: Vec<Derivation> = codes
//!     .iter()
//!     .zip(outs.iter_mut())
//!     .map(|(code, out)| Derivation { password: code.as_bytes(), salt: b"salt", out })
//!     .collect();
//! derive_batch(Prf::Sha512, 1000, &mut batch);
//!
//! let mut one = [0u8; 32];
//! pbkdf2::derive(Prf::Sha512, codes[2].as_bytes(), b"salt", 1000, &mut one);
//! assert_eq!(outs[2], one);
//! ```
//!
//! The vector code, the only `unsafe` code in ferry, is in the `kernels` module.

mod kernels;

use std::fmt;
use std::sync::OnceLock;

use crate::pbkdf2::{self, Start, StartsOf};
use crate::Prf;

/// The environment variable that pins the kernel: `scalar`, `avx2` or `avx512`. A kernel
/// the CPU lacks, or any other value, is ignored.
pub const KERNEL_VARIABLE: &str = "FERRY_PBKDF2_KERNEL";

/// One derivation of a batch: PBKDF2 of `password` and `salt`, filling `out`.
pub struct Derivation<'a> {
    /// The password (the HMAC key).
    pub password: &'a [u8],
    /// The salt.
    pub salt: &'a [u8],
    /// Where the derived key goes; its length is the derived key's.
    pub out: &'a mut [u8],
}

/// How a batch is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// One derivation at a time ([`crate::pbkdf2::derive`]): SHA extensions for SHA-1 and
    /// SHA-256 where the CPU has them.
    Scalar,
    /// AVX2: 4 lanes of SHA-512, 8 of SHA-256 or SHA-1.
    Avx2,
    /// AVX-512F: 8 lanes of SHA-512, 16 of SHA-256 or SHA-1.
    Avx512,
}

impl Kernel {
    /// Every kernel, narrowest first.
    pub const ALL: [Kernel; 3] = [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512];

    /// Whether the CPU running this has the instructions the kernel needs.
    pub fn is_available(self) -> bool {
        kernels::available(self)
    }

    /// The kernels this CPU can run, narrowest first.
    pub fn available() -> Vec<Kernel> {
        Kernel::ALL
            .into_iter()
            .filter(|k| k.is_available())
            .collect()
    }

    /// The kernel [`derive_batch`] uses for `prf`: the one [`KERNEL_VARIABLE`] names if
    /// the CPU has it, otherwise the widest the CPU has. SHA-384 always runs scalar.
    pub fn best_for(prf: Prf) -> Kernel {
        static PINNED: OnceLock<Option<Kernel>> = OnceLock::new();
        static WIDEST: OnceLock<Kernel> = OnceLock::new();
        if prf == Prf::Sha384 {
            return Kernel::Scalar;
        }
        let pinned = PINNED.get_or_init(|| {
            std::env::var(KERNEL_VARIABLE)
                .ok()
                .and_then(|v| Kernel::from_name(&v))
                .filter(|k| k.is_available())
        });
        pinned.unwrap_or_else(|| {
            *WIDEST.get_or_init(|| *Kernel::available().last().expect("scalar is always there"))
        })
    }

    /// Derivations computed together for `prf`.
    pub fn lanes(self, prf: Prf) -> usize {
        match (self, prf) {
            (Kernel::Scalar, _) | (_, Prf::Sha384) => 1,
            (Kernel::Avx2, Prf::Sha512) => 4,
            (Kernel::Avx2, _) => 8,
            (Kernel::Avx512, Prf::Sha512) => 8,
            (Kernel::Avx512, _) => 16,
        }
    }

    /// `scalar`, `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }

    /// Parses [`Kernel::name`]'s names (case-insensitive).
    pub fn from_name(name: &str) -> Option<Kernel> {
        Kernel::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name.trim()))
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Derives every key of `batch` with PBKDF2-HMAC-`prf` at `iterations`, with the kernel
/// [`Kernel::best_for`] picks. The results are exactly [`crate::pbkdf2::derive`]'s.
///
/// `iterations` must be at least 1.
pub fn derive_batch(prf: Prf, iterations: u32, batch: &mut [Derivation<'_>]) {
    // One chain alone runs faster on the scalar path than in one lane of many.
    let alone = batch.len() == 1 && batch[0].out.len() <= prf_digest(prf);
    let kernel = if alone {
        Kernel::Scalar
    } else {
        Kernel::best_for(prf)
    };
    derive_batch_with(kernel, prf, iterations, batch);
}

/// [`derive_batch`] with a given kernel (tests and benchmarks compare them).
///
/// # Panics
///
/// When `iterations` is 0 or the CPU lacks the kernel's instructions.
pub fn derive_batch_with(kernel: Kernel, prf: Prf, iterations: u32, batch: &mut [Derivation<'_>]) {
    assert!(iterations > 0, "PBKDF2 needs at least one iteration");
    assert!(
        kernel.is_available(),
        "{kernel} is not available on this CPU"
    );
    let lanes = kernel.lanes(prf);
    if lanes == 1 {
        for d in batch.iter_mut() {
            pbkdf2::derive(prf, d.password, d.salt, iterations, d.out);
        }
        return;
    }
    // One chain per output block of each derivation.
    let mut chains32: Vec<(usize, usize, Start<u32>)> = Vec::new();
    let mut chains64: Vec<(usize, usize, Start<u64>)> = Vec::new();
    for (i, d) in batch.iter().enumerate() {
        match pbkdf2::starts(prf, d.password, d.salt, d.out.len()) {
            StartsOf::U32(s) => chains32.extend(s.into_iter().enumerate().map(|(b, s)| (i, b, s))),
            StartsOf::U64(s) => chains64.extend(s.into_iter().enumerate().map(|(b, s)| (i, b, s))),
        }
    }
    let words = prf_digest(prf) / if prf == Prf::Sha512 { 8 } else { 4 };
    if prf == Prf::Sha512 {
        run(&chains64, lanes, words, batch, |i, o, t| {
            kernels::sha512(kernel, i, o, t, iterations)
        });
    } else {
        run(&chains32, lanes, words, batch, |i, o, t| match prf {
            Prf::Sha256 => kernels::sha256(kernel, i, o, t, iterations),
            _ => kernels::sha1(kernel, i, o, t, iterations),
        });
    }
}

fn prf_digest(prf: Prf) -> usize {
    match prf {
        Prf::Sha1 => 20,
        Prf::Sha256 => 32,
        Prf::Sha384 => 48,
        Prf::Sha512 => 64,
    }
}

/// A hash word, written big-endian into the derived key.
trait Word: Copy + Default {
    const BYTES: usize;
    fn write_be(self, out: &mut [u8]);
}

impl Word for u32 {
    const BYTES: usize = 4;
    fn write_be(self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_be_bytes());
    }
}

impl Word for u64 {
    const BYTES: usize = 8;
    fn write_be(self, out: &mut [u8]) {
        out.copy_from_slice(&self.to_be_bytes());
    }
}

/// Runs `chains` (derivation, output block, start) `lanes` at a time through `kernel`,
/// which takes the word-major inner, outer and U1-then-T buffers of one group.
fn run<W: Word>(
    chains: &[(usize, usize, Start<W>)],
    lanes: usize,
    words: usize,
    batch: &mut [Derivation<'_>],
    kernel: impl Fn(&[W], &[W], &mut [W]),
) {
    let mut inner = vec![W::default(); words * lanes];
    let mut outer = vec![W::default(); words * lanes];
    let mut t = vec![W::default(); words * lanes];
    let mut digest = vec![0u8; words * W::BYTES];
    for group in chains.chunks(lanes) {
        // Lanes past the group's end compute on zeros, and are thrown away.
        inner.fill(W::default());
        outer.fill(W::default());
        t.fill(W::default());
        for (lane, (_, _, start)) in group.iter().enumerate() {
            for j in 0..words {
                inner[j * lanes + lane] = start.inner[j];
                outer[j * lanes + lane] = start.outer[j];
                t[j * lanes + lane] = start.u1[j];
            }
        }
        kernel(&inner, &outer, &mut t);
        for (lane, &(d, block, _)) in group.iter().enumerate() {
            for (j, chunk) in digest.chunks_exact_mut(W::BYTES).enumerate() {
                t[j * lanes + lane].write_be(chunk);
            }
            let out = &mut batch[d].out[block * words * W::BYTES..];
            let n = out.len().min(digest.len());
            out[..n].copy_from_slice(&digest[..n]);
        }
    }
}
