//! PBKDF2-HMAC (RFC 8018) with the PRFs ASP.NET Identity and User Management use.
//!
//! Every password check costs thousands of iterations, so this is the hot loop of
//! `verify` and `login`. Each iteration is exactly two compressions of the hash function:
//! the HMAC inner and outer pad states are computed once per derivation, the message
//! blocks are padded once, and only the previous digest is written into them each time.
//! Nothing is allocated per iteration. The compressions come from the `sha1` and `sha2`
//! crates, which pick SHA extensions (SHA-1, SHA-256) or AVX2 (SHA-512) at run time.

use generic_array::GenericArray;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};

use crate::Prf;

/// Fills `out` with PBKDF2-HMAC-`prf` of `password` and `salt` at `iterations`.
///
/// `iterations` must be at least 1.
pub fn derive(prf: Prf, password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    assert!(iterations > 0, "PBKDF2 needs at least one iteration");
    match prf {
        Prf::Sha1 => derive_with::<Sha1Core>(password, salt, iterations, out),
        Prf::Sha256 => derive_with::<Sha256Core>(password, salt, iterations, out),
        Prf::Sha512 => derive_with::<Sha512Core>(password, salt, iterations, out),
        // Not an ASP.NET PRF and rare: the generic implementation is enough.
        Prf::Sha384 => ::pbkdf2::pbkdf2::<Hmac<Sha384>>(password, salt, iterations, out)
            .expect("HMAC accepts keys of any length"),
    }
}

/// One hash function's compression, as PBKDF2 needs it.
trait Core {
    type State: Copy;
    type Block: AsRef<[u8]> + AsMut<[u8]> + Copy;
    type Hmac: Mac + hmac::digest::KeyInit + Clone;
    const BLOCK: usize;
    const DIGEST: usize;
    fn iv() -> Self::State;
    fn zero_block() -> Self::Block;
    fn compress(state: &mut Self::State, block: &Self::Block);
    /// Writes the state as the big-endian digest.
    fn digest(state: &Self::State, out: &mut [u8]);
    /// The length field of a message of `bytes` bytes, written at the block's end.
    fn write_length(block: &mut Self::Block, bytes: u64);
    /// Hashes a key longer than a block (HMAC's rule).
    fn hash(data: &[u8], out: &mut [u8]);
}

struct Sha1Core;
struct Sha256Core;
struct Sha512Core;

impl Core for Sha1Core {
    type State = [u32; 5];
    type Block = [u8; 64];
    type Hmac = Hmac<Sha1>;
    const BLOCK: usize = 64;
    const DIGEST: usize = 20;
    fn iv() -> [u32; 5] {
        [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
    }
    fn zero_block() -> [u8; 64] {
        [0; 64]
    }
    fn compress(state: &mut [u32; 5], block: &[u8; 64]) {
        sha1::compress(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }
    fn digest(state: &[u32; 5], out: &mut [u8]) {
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
    }
    fn write_length(block: &mut [u8; 64], bytes: u64) {
        block[56..].copy_from_slice(&(bytes * 8).to_be_bytes());
    }
    fn hash(data: &[u8], out: &mut [u8]) {
        use sha1::Digest as _;
        out.copy_from_slice(&Sha1::digest(data));
    }
}

impl Core for Sha256Core {
    type State = [u32; 8];
    type Block = [u8; 64];
    type Hmac = Hmac<Sha256>;
    const BLOCK: usize = 64;
    const DIGEST: usize = 32;
    fn iv() -> [u32; 8] {
        [
            0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
            0x5be0cd19,
        ]
    }
    fn zero_block() -> [u8; 64] {
        [0; 64]
    }
    fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
        sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }
    fn digest(state: &[u32; 8], out: &mut [u8]) {
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
    }
    fn write_length(block: &mut [u8; 64], bytes: u64) {
        block[56..].copy_from_slice(&(bytes * 8).to_be_bytes());
    }
    fn hash(data: &[u8], out: &mut [u8]) {
        use sha2::Digest as _;
        out.copy_from_slice(&Sha256::digest(data));
    }
}

impl Core for Sha512Core {
    type State = [u64; 8];
    type Block = [u8; 128];
    type Hmac = Hmac<Sha512>;
    const BLOCK: usize = 128;
    const DIGEST: usize = 64;
    fn iv() -> [u64; 8] {
        [
            0x6a09e667f3bcc908,
            0xbb67ae8584caa73b,
            0x3c6ef372fe94f82b,
            0xa54ff53a5f1d36f1,
            0x510e527fade682d1,
            0x9b05688c2b3e6c1f,
            0x1f83d9abfb41bd6b,
            0x5be0cd19137e2179,
        ]
    }
    fn zero_block() -> [u8; 128] {
        [0; 128]
    }
    fn compress(state: &mut [u64; 8], block: &[u8; 128]) {
        sha2::compress512(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }
    fn digest(state: &[u64; 8], out: &mut [u8]) {
        for (chunk, word) in out.chunks_exact_mut(8).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
    }
    fn write_length(block: &mut [u8; 128], bytes: u64) {
        block[112..].copy_from_slice(&u128::from(bytes * 8).to_be_bytes());
    }
    fn hash(data: &[u8], out: &mut [u8]) {
        use sha2::Digest as _;
        out.copy_from_slice(&Sha512::digest(data));
    }
}

/// The HMAC inner and outer pad states of the key `password`: computed once per
/// derivation, each later HMAC starts from them.
fn keyed<C: Core>(password: &[u8]) -> (C::State, C::State) {
    let mut key = C::zero_block();
    if password.len() > C::BLOCK {
        C::hash(password, &mut key.as_mut()[..C::DIGEST]);
    } else {
        key.as_mut()[..password.len()].copy_from_slice(password);
    }
    let mut pad = key;
    pad.as_mut().iter_mut().for_each(|b| *b ^= 0x36);
    let mut inner = C::iv();
    C::compress(&mut inner, &pad);
    pad = key;
    pad.as_mut().iter_mut().for_each(|b| *b ^= 0x5c);
    let mut outer = C::iv();
    C::compress(&mut outer, &pad);
    (inner, outer)
}

/// U1 of output block `index` (from 0): HMAC(password, salt || INT(index + 1)), with the
/// general HMAC (the salt has any length).
fn first<C: Core>(mac: &C::Hmac, salt: &[u8], index: usize) -> impl AsRef<[u8]> {
    let mut first = mac.clone();
    first.update(salt);
    first.update(&(index as u32 + 1).to_be_bytes());
    first.finalize().into_bytes()
}

fn new_mac<C: Core>(password: &[u8]) -> C::Hmac {
    <C::Hmac as hmac::digest::KeyInit>::new_from_slice(password).expect("HMAC takes any key length")
}

fn derive_with<C: Core>(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    let (inner, outer) = keyed::<C>(password);

    // Every later message is one digest after a block of pad: pad it once.
    let mut block = C::zero_block();
    block.as_mut()[C::DIGEST] = 0x80;
    C::write_length(&mut block, (C::BLOCK + C::DIGEST) as u64);

    let mac = new_mac::<C>(password);
    let mut u = [0u8; 64];
    let mut t = [0u8; 64];
    for (index, chunk) in out.chunks_mut(C::DIGEST).enumerate() {
        let u1 = first::<C>(&mac, salt, index);
        u[..C::DIGEST].copy_from_slice(u1.as_ref());
        t[..C::DIGEST].copy_from_slice(u1.as_ref());
        for _ in 1..iterations {
            block.as_mut()[..C::DIGEST].copy_from_slice(&u[..C::DIGEST]);
            let mut s = inner;
            C::compress(&mut s, &block);
            C::digest(&s, &mut block.as_mut()[..C::DIGEST]);
            let mut s = outer;
            C::compress(&mut s, &block);
            C::digest(&s, &mut u[..C::DIGEST]);
            for (a, b) in t[..C::DIGEST].iter_mut().zip(&u[..C::DIGEST]) {
                *a ^= b;
            }
        }
        chunk.copy_from_slice(&t[..chunk.len()]);
    }
}

/// Where one PBKDF2 chain (one output block of one derivation) starts, as hash words:
/// the HMAC pad states and U1. The lane kernels run the iterations after it. SHA-1 uses
/// the first 5 words of each.
pub(crate) struct Start<W> {
    pub inner: [W; 8],
    pub outer: [W; 8],
    pub u1: [W; 8],
}

/// The starts of every output block of a derivation of `out_len` bytes.
pub(crate) fn starts(prf: Prf, password: &[u8], salt: &[u8], out_len: usize) -> StartsOf {
    fn words32<const N: usize>(state: [u32; N]) -> [u32; 8] {
        std::array::from_fn(|i| state.get(i).copied().unwrap_or(0))
    }
    fn be32(bytes: &[u8]) -> [u32; 8] {
        let mut w = [0u32; 8];
        for (w, c) in w.iter_mut().zip(bytes.chunks_exact(4)) {
            *w = u32::from_be_bytes(c.try_into().expect("4 bytes"));
        }
        w
    }
    match prf {
        Prf::Sha1 => {
            let (i, o) = keyed::<Sha1Core>(password);
            let mac = new_mac::<Sha1Core>(password);
            StartsOf::U32(
                (0..out_len.div_ceil(20))
                    .map(|b| Start {
                        inner: words32(i),
                        outer: words32(o),
                        u1: be32(first::<Sha1Core>(&mac, salt, b).as_ref()),
                    })
                    .collect(),
            )
        }
        Prf::Sha256 => {
            let (i, o) = keyed::<Sha256Core>(password);
            let mac = new_mac::<Sha256Core>(password);
            StartsOf::U32(
                (0..out_len.div_ceil(32))
                    .map(|b| Start {
                        inner: i,
                        outer: o,
                        u1: be32(first::<Sha256Core>(&mac, salt, b).as_ref()),
                    })
                    .collect(),
            )
        }
        Prf::Sha512 => {
            let (i, o) = keyed::<Sha512Core>(password);
            let mac = new_mac::<Sha512Core>(password);
            StartsOf::U64(
                (0..out_len.div_ceil(64))
                    .map(|b| {
                        let u1 = first::<Sha512Core>(&mac, salt, b);
                        let mut w = [0u64; 8];
                        for (w, c) in w.iter_mut().zip(u1.as_ref().chunks_exact(8)) {
                            *w = u64::from_be_bytes(c.try_into().expect("8 bytes"));
                        }
                        Start {
                            inner: i,
                            outer: o,
                            u1: w,
                        }
                    })
                    .collect(),
            )
        }
        Prf::Sha384 => unreachable!("SHA-384 is not run in lanes"),
    }
}

/// The chain starts of one derivation, in the PRF's word size.
pub(crate) enum StartsOf {
    U32(Vec<Start<u32>>),
    U64(Vec<Start<u64>>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6070_sha1() {
        let mut out = [0u8; 20];
        derive(Prf::Sha1, b"password", b"salt", 4096, &mut out);
        assert_eq!(
            out,
            [
                0x4b, 0x00, 0x79, 0x01, 0xb7, 0x65, 0x48, 0x9a, 0xbe, 0xad, 0x49, 0xd9, 0x26, 0xf7,
                0x21, 0xd0, 0x65, 0xa4, 0x29, 0xc1
            ]
        );
    }

    /// The fast loop agrees with the `pbkdf2` crate on every PRF, for keys shorter and
    /// longer than a block, empty salts, one iteration, and outputs of several blocks.
    #[test]
    fn agrees_with_the_pbkdf2_crate() {
        let passwords: [&[u8]; 5] = [b"", b"p", b"my password", &[b'x'; 64], &[b'y'; 200]];
        let salts: [&[u8]; 3] = [b"", b"0123456789abcdef", &[7u8; 100]];
        for password in passwords {
            for salt in salts {
                for iterations in [1u32, 2, 3, 17] {
                    for len in [16usize, 20, 32, 33, 64, 100, 129] {
                        let mut fast = vec![0u8; len];
                        let mut slow = vec![0u8; len];
                        derive(Prf::Sha1, password, salt, iterations, &mut fast);
                        ::pbkdf2::pbkdf2::<Hmac<Sha1>>(password, salt, iterations, &mut slow)
                            .unwrap();
                        assert_eq!(fast, slow, "SHA1 {iterations} {len}");
                        derive(Prf::Sha256, password, salt, iterations, &mut fast);
                        ::pbkdf2::pbkdf2::<Hmac<Sha256>>(password, salt, iterations, &mut slow)
                            .unwrap();
                        assert_eq!(fast, slow, "SHA256 {iterations} {len}");
                        derive(Prf::Sha512, password, salt, iterations, &mut fast);
                        ::pbkdf2::pbkdf2::<Hmac<Sha512>>(password, salt, iterations, &mut slow)
                            .unwrap();
                        assert_eq!(fast, slow, "SHA512 {iterations} {len}");
                    }
                }
            }
        }
    }
}
