//! The vector types of the lane kernels: 64-bit words (SHA-512) and 32-bit words (SHA-256,
//! SHA-1), in AVX2 (256-bit) and AVX-512 (512-bit) registers.
//!
//! Every operation is an `unsafe fn` marked `#[inline(always)]` and without a target
//! feature of its own: it is only ever inlined into one of the `#[target_feature]` entry
//! points in [`super`], which run only after run-time detection found the feature. Called
//! anywhere else, the intrinsics inside would be undefined behaviour on a CPU without it.

use std::arch::x86_64::*;

/// `LANES` words of one size in a register, one word per derivation.
pub trait Vector: Copy {
    /// The word: `u64` for SHA-512, `u32` for SHA-256 and SHA-1.
    type Word: Copy + Default + 'static;
    /// Words per vector.
    const LANES: usize;
    /// Whether [`Vector::maj`], [`Vector::ch`] and [`Vector::xor3`] are one instruction.
    const TERNARY_LOGIC: bool;
    /// Loads `LANES` words from `src[..LANES]`.
    unsafe fn load(src: &[Self::Word]) -> Self;
    /// Stores the lanes to `dst[..LANES]`.
    unsafe fn store(self, dst: &mut [Self::Word]);
    /// Every lane `x`.
    unsafe fn splat(x: Self::Word) -> Self;
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn xor(self, b: Self) -> Self;
    unsafe fn and(self, b: Self) -> Self;
    unsafe fn xor3(self, b: Self, c: Self) -> Self;
    /// `(self & f) ^ (!self & g)`.
    unsafe fn ch(self, f: Self, g: Self) -> Self;
    /// The majority of each bit of `self`, `b`, `c`.
    unsafe fn maj(self, b: Self, c: Self) -> Self;
    unsafe fn ror<const N: i32>(self) -> Self;
    unsafe fn rol<const N: i32>(self) -> Self;
    unsafe fn shr<const N: i32>(self) -> Self;
}

/// Four 64-bit lanes in an AVX2 register.
#[derive(Clone, Copy)]
pub struct Avx2x4(__m256i);
/// Eight 32-bit lanes in an AVX2 register.
#[derive(Clone, Copy)]
pub struct Avx2x8(__m256i);
/// Eight 64-bit lanes in an AVX-512 register.
#[derive(Clone, Copy)]
pub struct Avx512x8(__m512i);
/// Sixteen 32-bit lanes in an AVX-512 register.
#[derive(Clone, Copy)]
pub struct Avx512x16(__m512i);

/// A shift count as the shift-by-register instructions take it; LLVM folds the constant
/// into an immediate shift.
#[inline(always)]
unsafe fn count(n: i32) -> __m128i {
    unsafe { _mm_cvtsi32_si128(n) }
}

/// AVX2 has no rotation and no three-input logic: a rotation is two shifts and an or
/// (a rotation by 8 of 64-bit words one byte shuffle), `Ch` and `Maj` three and four
/// operations.
macro_rules! avx2 {
    ($ty:ident, $word:ty, $lanes:expr, $bits:expr, $set1:ident, $as:ty, $add:ident, $srl:ident, $sll:ident) => {
        impl Vector for $ty {
            type Word = $word;
            const LANES: usize = $lanes;
            const TERNARY_LOGIC: bool = false;
            #[inline(always)]
            unsafe fn load(src: &[$word]) -> Self {
                debug_assert!(src.len() >= $lanes);
                Self(unsafe { _mm256_loadu_si256(src.as_ptr().cast()) })
            }
            #[inline(always)]
            unsafe fn store(self, dst: &mut [$word]) {
                debug_assert!(dst.len() >= $lanes);
                unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), self.0) }
            }
            #[inline(always)]
            unsafe fn splat(x: $word) -> Self {
                Self(unsafe { $set1(x as $as) })
            }
            #[inline(always)]
            unsafe fn add(self, b: Self) -> Self {
                Self(unsafe { $add(self.0, b.0) })
            }
            #[inline(always)]
            unsafe fn xor(self, b: Self) -> Self {
                Self(unsafe { _mm256_xor_si256(self.0, b.0) })
            }
            #[inline(always)]
            unsafe fn and(self, b: Self) -> Self {
                Self(unsafe { _mm256_and_si256(self.0, b.0) })
            }
            #[inline(always)]
            unsafe fn xor3(self, b: Self, c: Self) -> Self {
                unsafe { self.xor(b).xor(c) }
            }
            #[inline(always)]
            unsafe fn ch(self, f: Self, g: Self) -> Self {
                // g ^ (e & (f ^ g))
                unsafe { g.xor(self.and(f.xor(g))) }
            }
            #[inline(always)]
            unsafe fn maj(self, b: Self, c: Self) -> Self {
                // (a & b) | (c & (a | b))
                unsafe {
                    let or = _mm256_or_si256(self.0, b.0);
                    Self(_mm256_or_si256(self.and(b).0, c.and(Self(or)).0))
                }
            }
            #[inline(always)]
            unsafe fn ror<const N: i32>(self) -> Self {
                unsafe {
                    if $bits == 64 && N == 8 {
                        let bytes = _mm256_setr_epi8(
                            1, 2, 3, 4, 5, 6, 7, 0, 9, 10, 11, 12, 13, 14, 15, 8, 1, 2, 3, 4, 5, 6,
                            7, 0, 9, 10, 11, 12, 13, 14, 15, 8,
                        );
                        return Self(_mm256_shuffle_epi8(self.0, bytes));
                    }
                    Self(_mm256_or_si256(
                        $srl(self.0, count(N)),
                        $sll(self.0, count($bits - N)),
                    ))
                }
            }
            #[inline(always)]
            unsafe fn rol<const N: i32>(self) -> Self {
                unsafe {
                    Self(_mm256_or_si256(
                        $sll(self.0, count(N)),
                        $srl(self.0, count($bits - N)),
                    ))
                }
            }
            #[inline(always)]
            unsafe fn shr<const N: i32>(self) -> Self {
                Self(unsafe { $srl(self.0, count(N)) })
            }
        }
    };
}

avx2!(
    Avx2x4,
    u64,
    4,
    64,
    _mm256_set1_epi64x,
    i64,
    _mm256_add_epi64,
    _mm256_srl_epi64,
    _mm256_sll_epi64
);
avx2!(
    Avx2x8,
    u32,
    8,
    32,
    _mm256_set1_epi32,
    i32,
    _mm256_add_epi32,
    _mm256_srl_epi32,
    _mm256_sll_epi32
);

/// AVX-512 has rotations and a three-input logic instruction (`vpternlog`, whose immediate
/// is the truth table of the function of its three inputs: 0x96 xor, 0xCA choose, 0xE8
/// majority).
macro_rules! avx512 {
    ($ty:ident, $word:ty, $lanes:expr, $set1:ident, $as:ty, $add:ident, $tern:ident, $ror:ident, $rol:ident, $srl:ident) => {
        impl Vector for $ty {
            type Word = $word;
            const LANES: usize = $lanes;
            const TERNARY_LOGIC: bool = true;
            #[inline(always)]
            unsafe fn load(src: &[$word]) -> Self {
                debug_assert!(src.len() >= $lanes);
                Self(unsafe { _mm512_loadu_si512(src.as_ptr().cast()) })
            }
            #[inline(always)]
            unsafe fn store(self, dst: &mut [$word]) {
                debug_assert!(dst.len() >= $lanes);
                unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), self.0) }
            }
            #[inline(always)]
            unsafe fn splat(x: $word) -> Self {
                Self(unsafe { $set1(x as $as) })
            }
            #[inline(always)]
            unsafe fn add(self, b: Self) -> Self {
                Self(unsafe { $add(self.0, b.0) })
            }
            #[inline(always)]
            unsafe fn xor(self, b: Self) -> Self {
                Self(unsafe { _mm512_xor_si512(self.0, b.0) })
            }
            #[inline(always)]
            unsafe fn and(self, b: Self) -> Self {
                Self(unsafe { _mm512_and_si512(self.0, b.0) })
            }
            #[inline(always)]
            unsafe fn xor3(self, b: Self, c: Self) -> Self {
                Self(unsafe { $tern::<0x96>(self.0, b.0, c.0) })
            }
            #[inline(always)]
            unsafe fn ch(self, f: Self, g: Self) -> Self {
                Self(unsafe { $tern::<0xCA>(self.0, f.0, g.0) })
            }
            #[inline(always)]
            unsafe fn maj(self, b: Self, c: Self) -> Self {
                Self(unsafe { $tern::<0xE8>(self.0, b.0, c.0) })
            }
            #[inline(always)]
            unsafe fn ror<const N: i32>(self) -> Self {
                Self(unsafe { $ror::<N>(self.0) })
            }
            #[inline(always)]
            unsafe fn rol<const N: i32>(self) -> Self {
                Self(unsafe { $rol::<N>(self.0) })
            }
            #[inline(always)]
            unsafe fn shr<const N: i32>(self) -> Self {
                Self(unsafe { $srl(self.0, count(N)) })
            }
        }
    };
}

avx512!(
    Avx512x8,
    u64,
    8,
    _mm512_set1_epi64,
    i64,
    _mm512_add_epi64,
    _mm512_ternarylogic_epi64,
    _mm512_ror_epi64,
    _mm512_rol_epi64,
    _mm512_srl_epi64
);
avx512!(
    Avx512x16,
    u32,
    16,
    _mm512_set1_epi32,
    i32,
    _mm512_add_epi32,
    _mm512_ternarylogic_epi32,
    _mm512_ror_epi32,
    _mm512_rol_epi32,
    _mm512_srl_epi32
);
