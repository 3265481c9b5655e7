//! A share of a bundle's users parts (`--parts K/N`), so that N loaders on N machines load
//! one bundle together, each its own parts.

use std::fmt;
use std::str::FromStr;

/// Share `K` of `N`: the users parts whose position in the manifest (counted from 0)
/// leaves remainder `K - 1` when divided by `N`. Parts are dealt round-robin, so shares
/// differ by at most one part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    k: u32,
    n: u32,
}

impl Share {
    /// Share `k` of `n` (1 ≤ k ≤ n).
    pub fn new(k: u32, n: u32) -> Result<Share, String> {
        if n == 0 || k == 0 || k > n {
            return Err(format!(
                "`{k}/{n}` is not a share: write K/N with 1 <= K <= N, e.g. 1/4"
            ));
        }
        Ok(Share { k, n })
    }

    /// Whether the users part at `index` (manifest order, from 0) is in the share.
    pub fn holds(self, index: usize) -> bool {
        index % self.n as usize == (self.k - 1) as usize
    }

    /// `N`.
    pub fn of(self) -> u32 {
        self.n
    }
}

impl FromStr for Share {
    type Err = String;

    fn from_str(s: &str) -> Result<Share, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not a share: write K/N, e.g. 1/4"))?;
        let num = |t: &str| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{s}` is not a share: write K/N, e.g. 1/4"))
        };
        Share::new(num(k)?, num(n)?)
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_deal_parts_round_robin() {
        let shares: Vec<Share> = ["1/3", "2/3", "3/3"].map(|s| s.parse().unwrap()).into();
        for index in 0..10 {
            assert_eq!(shares.iter().filter(|s| s.holds(index)).count(), 1);
        }
        assert!(shares[1].holds(4));
        assert_eq!(shares[2].to_string(), "3/3");
        for bad in ["0/2", "3/2", "1/0", "1", "a/b"] {
            assert!(bad.parse::<Share>().is_err(), "{bad}");
        }
    }
}
