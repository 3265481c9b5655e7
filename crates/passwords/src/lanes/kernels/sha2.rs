//! SHA-256 and SHA-512 compressions in lanes: one algorithm, two word sizes.

use std::marker::PhantomData;

use super::vector::Vector;
use super::Compression;

/// What tells SHA-512 from SHA-256: the word, the rounds, their constants and rotations.
pub trait Sha2 {
    /// The vector of words.
    type V: Vector;
    /// Rounds per compression: 80 or 64.
    const ROUNDS: usize;
    /// FIPS 180-4's round constants.
    const K: &'static [<Self::V as Vector>::Word];
    /// Σ0, Σ1, σ0, σ1.
    unsafe fn big_sigma0(x: Self::V) -> Self::V;
    unsafe fn big_sigma1(x: Self::V) -> Self::V;
    unsafe fn small_sigma0(x: Self::V) -> Self::V;
    unsafe fn small_sigma1(x: Self::V) -> Self::V;
}

/// SHA-512 over `V`'s 64-bit lanes.
pub struct Sha512<V>(PhantomData<V>);
/// SHA-256 over `V`'s 32-bit lanes.
pub struct Sha256<V>(PhantomData<V>);

impl<V: Vector<Word = u64>> Sha2 for Sha512<V> {
    type V = V;
    const ROUNDS: usize = 80;
    const K: &'static [u64] = &K512;
    #[inline(always)]
    unsafe fn big_sigma0(x: V) -> V {
        unsafe { x.ror::<28>().xor3(x.ror::<34>(), x.ror::<39>()) }
    }
    #[inline(always)]
    unsafe fn big_sigma1(x: V) -> V {
        unsafe { x.ror::<14>().xor3(x.ror::<18>(), x.ror::<41>()) }
    }
    #[inline(always)]
    unsafe fn small_sigma0(x: V) -> V {
        unsafe { x.ror::<1>().xor3(x.ror::<8>(), x.shr::<7>()) }
    }
    #[inline(always)]
    unsafe fn small_sigma1(x: V) -> V {
        unsafe { x.ror::<19>().xor3(x.ror::<61>(), x.shr::<6>()) }
    }
}

impl<V: Vector<Word = u32>> Sha2 for Sha256<V> {
    type V = V;
    const ROUNDS: usize = 64;
    const K: &'static [u32] = &K256;
    #[inline(always)]
    unsafe fn big_sigma0(x: V) -> V {
        unsafe { x.ror::<2>().xor3(x.ror::<13>(), x.ror::<22>()) }
    }
    #[inline(always)]
    unsafe fn big_sigma1(x: V) -> V {
        unsafe { x.ror::<6>().xor3(x.ror::<11>(), x.ror::<25>()) }
    }
    #[inline(always)]
    unsafe fn small_sigma0(x: V) -> V {
        unsafe { x.ror::<7>().xor3(x.ror::<18>(), x.shr::<3>()) }
    }
    #[inline(always)]
    unsafe fn small_sigma1(x: V) -> V {
        unsafe { x.ror::<17>().xor3(x.ror::<19>(), x.shr::<10>()) }
    }
}

impl<V: Vector<Word = u64>> Compression for Sha512<V> {
    type V = V;
    const WORDS: usize = 8;
    // The 0x80 end marker after a 64-byte digest, and the message length in bits (one
    // 128-byte pad block before it).
    const PAD: u64 = 0x8000_0000_0000_0000;
    const LENGTH_BITS: u64 = (128 + 64) * 8;
    #[inline(always)]
    unsafe fn compress(state: &[V; 8], w: &mut [V; 16]) -> [V; 8] {
        unsafe { compress::<Self>(state, w) }
    }
}

impl<V: Vector<Word = u32>> Compression for Sha256<V> {
    type V = V;
    const WORDS: usize = 8;
    const PAD: u32 = 0x8000_0000;
    const LENGTH_BITS: u32 = (64 + 32) * 8;
    #[inline(always)]
    unsafe fn compress(state: &[V; 8], w: &mut [V; 16]) -> [V; 8] {
        unsafe { compress::<Self>(state, w) }
    }
}

/// One compression of the block `w` (overwritten by the message schedule) into `state`.
// The last round's `bc` is not read.
#[allow(unused_assignments)]
#[inline(always)]
unsafe fn compress<S: Sha2>(state: &[S::V; 8], w: &mut [S::V; 16]) -> [S::V; 8] {
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    // b ^ c of the coming round, for Maj without three-input logic.
    let mut bc = unsafe { b.xor(c) };
    // One round, with the working variables renamed instead of moved: `d` becomes the
    // new `e`, `h` the new `a`.
    macro_rules! round {
        ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $w:expr, $i:expr) => {
            let t1 = $h
                .add(S::big_sigma1($e))
                .add($e.ch($f, $g))
                .add(S::V::splat(S::K[$i]))
                .add($w);
            $d = $d.add(t1);
            // Maj(a, b, c) = ((a ^ b) & (b ^ c)) ^ b, and this round's a ^ b is the next
            // round's b ^ c: two operations instead of four, where there is no
            // three-input logic instruction to do it in one.
            let maj = if S::V::TERNARY_LOGIC {
                $a.maj($b, $c)
            } else {
                let ab = $a.xor($b);
                let m = ab.and(bc).xor($b);
                bc = ab;
                m
            };
            $h = t1.add(S::big_sigma0($a)).add(maj);
        };
    }
    // The block's own words, then the message schedule, computed in place. (Macros, not
    // closures: a closure is not compiled with its caller's target features, and would
    // not be inlined.)
    macro_rules! given {
        ($j:expr) => {
            w[$j]
        };
    }
    macro_rules! schedule {
        ($j:expr) => {{
            let j = $j;
            let x = S::small_sigma1(w[(j - 2) & 15])
                .add(w[(j - 7) & 15])
                .add(S::small_sigma0(w[(j - 15) & 15]))
                .add(w[j & 15]);
            w[j & 15] = x;
            x
        }};
    }
    macro_rules! eight {
        ($word:ident, $i:expr) => {
            round!(a, b, c, d, e, f, g, h, $word!($i), $i);
            round!(h, a, b, c, d, e, f, g, $word!($i + 1), $i + 1);
            round!(g, h, a, b, c, d, e, f, $word!($i + 2), $i + 2);
            round!(f, g, h, a, b, c, d, e, $word!($i + 3), $i + 3);
            round!(e, f, g, h, a, b, c, d, $word!($i + 4), $i + 4);
            round!(d, e, f, g, h, a, b, c, $word!($i + 5), $i + 5);
            round!(c, d, e, f, g, h, a, b, $word!($i + 6), $i + 6);
            round!(b, c, d, e, f, g, h, a, $word!($i + 7), $i + 7);
        };
    }
    // Every round written out, with constant indices: the block's constant words (the
    // padding) fold away, and the schedule stays in registers where it can.
    unsafe {
        eight!(given, 0);
        eight!(given, 8);
        eight!(schedule, 16);
        eight!(schedule, 24);
        eight!(schedule, 32);
        eight!(schedule, 40);
        eight!(schedule, 48);
        eight!(schedule, 56);
        if S::ROUNDS == 80 {
            eight!(schedule, 64);
            eight!(schedule, 72);
        }
        [
            state[0].add(a),
            state[1].add(b),
            state[2].add(c),
            state[3].add(d),
            state[4].add(e),
            state[5].add(f),
            state[6].add(g),
            state[7].add(h),
        ]
    }
}

/// FIPS 180-4's SHA-512 round constants.
const K512: [u64; 80] = [
    0x428a2f98d728ae22,
    0x7137449123ef65cd,
    0xb5c0fbcfec4d3b2f,
    0xe9b5dba58189dbbc,
    0x3956c25bf348b538,
    0x59f111f1b605d019,
    0x923f82a4af194f9b,
    0xab1c5ed5da6d8118,
    0xd807aa98a3030242,
    0x12835b0145706fbe,
    0x243185be4ee4b28c,
    0x550c7dc3d5ffb4e2,
    0x72be5d74f27b896f,
    0x80deb1fe3b1696b1,
    0x9bdc06a725c71235,
    0xc19bf174cf692694,
    0xe49b69c19ef14ad2,
    0xefbe4786384f25e3,
    0x0fc19dc68b8cd5b5,
    0x240ca1cc77ac9c65,
    0x2de92c6f592b0275,
    0x4a7484aa6ea6e483,
    0x5cb0a9dcbd41fbd4,
    0x76f988da831153b5,
    0x983e5152ee66dfab,
    0xa831c66d2db43210,
    0xb00327c898fb213f,
    0xbf597fc7beef0ee4,
    0xc6e00bf33da88fc2,
    0xd5a79147930aa725,
    0x06ca6351e003826f,
    0x142929670a0e6e70,
    0x27b70a8546d22ffc,
    0x2e1b21385c26c926,
    0x4d2c6dfc5ac42aed,
    0x53380d139d95b3df,
    0x650a73548baf63de,
    0x766a0abb3c77b2a8,
    0x81c2c92e47edaee6,
    0x92722c851482353b,
    0xa2bfe8a14cf10364,
    0xa81a664bbc423001,
    0xc24b8b70d0f89791,
    0xc76c51a30654be30,
    0xd192e819d6ef5218,
    0xd69906245565a910,
    0xf40e35855771202a,
    0x106aa07032bbd1b8,
    0x19a4c116b8d2d0c8,
    0x1e376c085141ab53,
    0x2748774cdf8eeb99,
    0x34b0bcb5e19b48a8,
    0x391c0cb3c5c95a63,
    0x4ed8aa4ae3418acb,
    0x5b9cca4f7763e373,
    0x682e6ff3d6b2b8a3,
    0x748f82ee5defb2fc,
    0x78a5636f43172f60,
    0x84c87814a1f0ab72,
    0x8cc702081a6439ec,
    0x90befffa23631e28,
    0xa4506cebde82bde9,
    0xbef9a3f7b2c67915,
    0xc67178f2e372532b,
    0xca273eceea26619c,
    0xd186b8c721c0c207,
    0xeada7dd6cde0eb1e,
    0xf57d4f7fee6ed178,
    0x06f067aa72176fba,
    0x0a637dc5a2c898a6,
    0x113f9804bef90dae,
    0x1b710b35131c471b,
    0x28db77f523047d84,
    0x32caab7b40c72493,
    0x3c9ebe0a15c9bebc,
    0x431d67c49c100d4c,
    0x4cc5d4becb3e42b6,
    0x597f299cfc657e2a,
    0x5fcb6fab3ad6faec,
    0x6c44198c4a475817,
];

/// FIPS 180-4's SHA-256 round constants.
const K256: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];
