//! SHA-1 compressions in lanes.

use std::marker::PhantomData;

use super::vector::Vector;
use super::Compression;

/// SHA-1 over `V`'s 32-bit lanes.
pub struct Sha1<V>(PhantomData<V>);

impl<V: Vector<Word = u32>> Compression for Sha1<V> {
    type V = V;
    const WORDS: usize = 5;
    // The 0x80 end marker after a 20-byte digest, and the message length in bits.
    const PAD: u32 = 0x8000_0000;
    const LENGTH_BITS: u32 = (64 + 20) * 8;
    #[inline(always)]
    unsafe fn compress(state: &[V; 8], w: &mut [V; 16]) -> [V; 8] {
        unsafe { compress(state, w) }
    }
}

/// One compression of the block `w` (overwritten by the message schedule) into the first
/// five words of `state` (the other three stay as they are).
#[inline(always)]
unsafe fn compress<V: Vector<Word = u32>>(state: &[V; 8], w: &mut [V; 16]) -> [V; 8] {
    let [mut a, mut b, mut c, mut d, mut e, rest0, rest1, rest2] = *state;
    // One round, renaming instead of moving: `e` becomes the new `a`, `b` is rotated in
    // place and becomes the new `c`.
    macro_rules! round {
        ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $k:expr, $w:expr) => {
            $e = $e
                .add($a.rol::<5>())
                .add($f!($b, $c, $d))
                .add(V::splat($k))
                .add($w);
            $b = $b.rol::<30>();
        };
    }
    // Macros, not closures: a closure is not compiled with its caller's target features,
    // and would not be inlined.
    macro_rules! choose {
        ($b:expr, $c:expr, $d:expr) => {
            $b.ch($c, $d)
        };
    }
    macro_rules! parity {
        ($b:expr, $c:expr, $d:expr) => {
            $b.xor3($c, $d)
        };
    }
    macro_rules! majority {
        ($b:expr, $c:expr, $d:expr) => {
            $b.maj($c, $d)
        };
    }
    macro_rules! schedule {
        ($j:expr) => {{
            let j = $j;
            if j < 16 {
                w[j]
            } else {
                let x = w[(j - 3) & 15]
                    .xor3(w[(j - 8) & 15], w[(j - 14) & 15])
                    .xor(w[j & 15])
                    .rol::<1>();
                w[j & 15] = x;
                x
            }
        }};
    }
    macro_rules! five {
        ($f:ident, $k:expr, $i:expr) => {
            round!(a, b, c, d, e, $f, $k, schedule!($i));
            round!(e, a, b, c, d, $f, $k, schedule!($i + 1));
            round!(d, e, a, b, c, $f, $k, schedule!($i + 2));
            round!(c, d, e, a, b, $f, $k, schedule!($i + 3));
            round!(b, c, d, e, a, $f, $k, schedule!($i + 4));
        };
    }
    unsafe {
        // Every round written out, with constant indices: the block's constant words (the
        // padding) fold away.
        five!(choose, 0x5A82_7999, 0);
        five!(choose, 0x5A82_7999, 5);
        five!(choose, 0x5A82_7999, 10);
        five!(choose, 0x5A82_7999, 15);
        five!(parity, 0x6ED9_EBA1, 20);
        five!(parity, 0x6ED9_EBA1, 25);
        five!(parity, 0x6ED9_EBA1, 30);
        five!(parity, 0x6ED9_EBA1, 35);
        five!(majority, 0x8F1B_BCDC, 40);
        five!(majority, 0x8F1B_BCDC, 45);
        five!(majority, 0x8F1B_BCDC, 50);
        five!(majority, 0x8F1B_BCDC, 55);
        five!(parity, 0xCA62_C1D6, 60);
        five!(parity, 0xCA62_C1D6, 65);
        five!(parity, 0xCA62_C1D6, 70);
        five!(parity, 0xCA62_C1D6, 75);
        [
            state[0].add(a),
            state[1].add(b),
            state[2].add(c),
            state[3].add(d),
            state[4].add(e),
            rest0,
            rest1,
            rest2,
        ]
    }
}
