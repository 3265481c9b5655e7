//! The lane kernels: PBKDF2's iteration loop over several independent derivations at once,
//! one derivation per lane of an AVX2 or AVX-512 register.
//!
//! This module is the only place in ferry with `unsafe` code, for two reasons:
//!
//! - The `std::arch` intrinsics are unsafe to call: they are undefined behaviour on a CPU
//!   without the instruction set. Every intrinsic is inside an `#[inline(always)]` helper
//!   ([`vector`]) that is only ever inlined into a `#[target_feature]` function below, and
//!   each of those is called only by the safe function beside it, after
//!   `is_x86_feature_detected!` said the CPU has the feature ([`Kernel::is_available`]).
//! - Vector loads and stores go through raw pointers. The PBKDF2 loop checks that each
//!   slice holds its words of every lane before any load.
//!
//! The algorithms are written once, generic over the vector type, and instantiated per
//! instruction set: SHA-256 and SHA-512 are one ([`sha2`]), SHA-1 another ([`sha1`]), and
//! the PBKDF2 iteration loop over any of them is [`pbkdf2`].
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
mod sha1;
#[cfg(target_arch = "x86_64")]
mod sha2;
#[cfg(target_arch = "x86_64")]
mod vector;

use super::Kernel;

/// Whether the CPU running this has what `kernel` needs.
pub fn available(kernel: Kernel) -> bool {
    match kernel {
        Kernel::Scalar => true,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
        #[cfg(not(target_arch = "x86_64"))]
        _ => false,
    }
}

/// PBKDF2-HMAC-SHA512 iterations 2..=`iterations` over `kernel.lanes(Sha512)` chains in the
/// word-major layout of [`pbkdf2`]. `kernel` must be a vector kernel that is available.
pub fn sha512(kernel: Kernel, inner: &[u64], outer: &[u64], t: &mut [u64], iterations: u32) {
    assert!(available(kernel), "{kernel} is not available on this CPU");
    match kernel {
        // SAFETY: the CPU has AVX2 (checked above); the kernel checks the slice lengths.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { sha512_avx2(inner, outer, t, iterations) },
        // SAFETY: the CPU has AVX-512F (checked above); the kernel checks the slice lengths.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { sha512_avx512(inner, outer, t, iterations) },
        _ => unreachable!("the scalar path does not run in lanes"),
    }
}

/// PBKDF2-HMAC-SHA256, as [`sha512`].
pub fn sha256(kernel: Kernel, inner: &[u32], outer: &[u32], t: &mut [u32], iterations: u32) {
    assert!(available(kernel), "{kernel} is not available on this CPU");
    match kernel {
        // SAFETY: as in `sha512`.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { sha256_avx2(inner, outer, t, iterations) },
        // SAFETY: as in `sha512`.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { sha256_avx512(inner, outer, t, iterations) },
        _ => unreachable!("the scalar path does not run in lanes"),
    }
}

/// PBKDF2-HMAC-SHA1, as [`sha512`] (5 words per chain).
pub fn sha1(kernel: Kernel, inner: &[u32], outer: &[u32], t: &mut [u32], iterations: u32) {
    assert!(available(kernel), "{kernel} is not available on this CPU");
    match kernel {
        // SAFETY: as in `sha512`.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { sha1_avx2(inner, outer, t, iterations) },
        // SAFETY: as in `sha512`.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { sha1_avx512(inner, outer, t, iterations) },
        _ => unreachable!("the scalar path does not run in lanes"),
    }
}

/// A hash's compression over vectors of lanes, as the PBKDF2 loop needs it.
#[cfg(target_arch = "x86_64")]
trait Compression {
    /// The vector of words.
    type V: vector::Vector;
    /// Words of state and digest: 8 (SHA-2) or 5 (SHA-1, which leaves the others alone).
    const WORDS: usize;
    /// The word after the digest in the one block PBKDF2 hashes each time (the 0x80 end
    /// marker), and the message length in bits that ends it.
    const PAD: <Self::V as vector::Vector>::Word;
    const LENGTH_BITS: <Self::V as vector::Vector>::Word;
    /// One compression of `w` (overwritten by the message schedule) into `state`.
    unsafe fn compress(state: &[Self::V; 8], w: &mut [Self::V; 16]) -> [Self::V; 8];
}

/// Runs PBKDF2's iterations 2 to `iterations` of `LANES` independent chains.
///
/// The slices are word-major (word `j` of lane `l` at `j * LANES + l`), `C::WORDS` words
/// each: `inner` and `outer` the HMAC pad states, `t` U1 on entry and the chain's result
/// (U1 xor … xor Un) on return.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn pbkdf2<C: Compression>(
    inner: &[<C::V as vector::Vector>::Word],
    outer: &[<C::V as vector::Vector>::Word],
    t: &mut [<C::V as vector::Vector>::Word],
    iterations: u32,
) {
    use vector::Vector as _;
    let (n, words) = (C::V::LANES, C::WORDS);
    assert!(inner.len() >= words * n && outer.len() >= words * n && t.len() >= words * n);
    unsafe {
        let pad = C::V::splat(C::PAD);
        let length = C::V::splat(C::LENGTH_BITS);
        let zero = C::V::splat(Default::default());
        let (mut i, mut o, mut u) = ([zero; 8], [zero; 8], [zero; 8]);
        for j in 0..words {
            i[j] = C::V::load(&inner[j * n..]);
            o[j] = C::V::load(&outer[j * n..]);
            u[j] = C::V::load(&t[j * n..]);
        }
        let (inner, outer) = (i, o);
        let mut acc = u;
        // The block of a digest: its words, the padding, zeros, the length. (A macro, not
        // a closure: a closure is not compiled with its caller's target features.)
        macro_rules! block {
            ($digest:expr) => {{
                let mut w = [zero; 16];
                w[..words].copy_from_slice(&$digest[..words]);
                w[words] = pad;
                w[15] = length;
                w
            }};
        }
        for _ in 1..iterations {
            let s = C::compress(&inner, &mut block!(u));
            u = C::compress(&outer, &mut block!(s));
            for j in 0..words {
                acc[j] = acc[j].xor(u[j]);
            }
        }
        for (j, word) in acc.iter().take(words).enumerate() {
            word.store(&mut t[j * n..]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sha512_avx2(inner: &[u64], outer: &[u64], t: &mut [u64], iterations: u32) {
    unsafe { pbkdf2::<sha2::Sha512<vector::Avx2x4>>(inner, outer, t, iterations) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sha512_avx512(inner: &[u64], outer: &[u64], t: &mut [u64], iterations: u32) {
    unsafe { pbkdf2::<sha2::Sha512<vector::Avx512x8>>(inner, outer, t, iterations) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sha256_avx2(inner: &[u32], outer: &[u32], t: &mut [u32], iterations: u32) {
    unsafe { pbkdf2::<sha2::Sha256<vector::Avx2x8>>(inner, outer, t, iterations) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sha256_avx512(inner: &[u32], outer: &[u32], t: &mut [u32], iterations: u32) {
    unsafe { pbkdf2::<sha2::Sha256<vector::Avx512x16>>(inner, outer, t, iterations) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sha1_avx2(inner: &[u32], outer: &[u32], t: &mut [u32], iterations: u32) {
    unsafe { pbkdf2::<sha1::Sha1<vector::Avx2x8>>(inner, outer, t, iterations) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sha1_avx512(inner: &[u32], outer: &[u32], t: &mut [u32], iterations: u32) {
    unsafe { pbkdf2::<sha1::Sha1<vector::Avx512x16>>(inner, outer, t, iterations) }
}
