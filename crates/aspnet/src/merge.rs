//! The ordered merge: child rows sorted by user id, consumed alongside users sorted by
//! id. Memory holds one peeked row per child table, whatever the number of users.

use crate::Error;

/// A cursor over `(parent key, item)` pairs in ascending key order.
pub(crate) struct Cursor<T, I: Iterator<Item = Result<(String, T), Error>>> {
    rows: Option<I>,
    peeked: Option<(String, T)>,
    last_key: Option<String>,
    table: String,
    key_column: String,
    /// Items read and handed to a parent.
    pub taken: u64,
    /// Items whose parent does not exist.
    pub orphans: u64,
}

impl<T, I: Iterator<Item = Result<(String, T), Error>>> Cursor<T, I> {
    /// A cursor over `rows`, or an empty one when the table does not exist.
    pub fn new(rows: Option<I>, table: &str, key_column: &str) -> Self {
        Cursor {
            rows,
            peeked: None,
            last_key: None,
            table: table.to_string(),
            key_column: key_column.to_string(),
            taken: 0,
            orphans: 0,
        }
    }

    /// The key of the next item, without taking it.
    pub fn peek(&mut self) -> Result<Option<&str>, Error> {
        if self.peeked.is_none() {
            let Some(rows) = self.rows.as_mut() else {
                return Ok(None);
            };
            match rows.next() {
                None => {
                    self.rows = None;
                    return Ok(None);
                }
                Some(item) => {
                    let (key, value) = item?;
                    if let Some(last) = &self.last_key {
                        if key.as_str() < last.as_str() {
                            return Err(Error::Order {
                                table: self.table.clone(),
                                column: self.key_column.clone(),
                                message: format!("`{key}` came after `{last}`"),
                            });
                        }
                    }
                    self.last_key = Some(key.clone());
                    self.peeked = Some((key, value));
                }
            }
        }
        Ok(self.peeked.as_ref().map(|(k, _)| k.as_str()))
    }

    /// Moves every item of `parent` into `out`, counting as orphans the items whose key
    /// sorts before it (their parent was not in the parent stream).
    pub fn take_for(&mut self, parent: &str, out: &mut Vec<T>) -> Result<(), Error> {
        while let Some(key) = self.peek()? {
            match key.cmp(parent) {
                std::cmp::Ordering::Less => {
                    self.peeked = None;
                    self.orphans += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (_, item) = self.peeked.take().expect("peeked");
                    out.push(item);
                    self.taken += 1;
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        Ok(())
    }

    /// Counts whatever is left as orphans (used after the last parent).
    pub fn drain(&mut self) -> Result<(), Error> {
        while self.peek()?.is_some() {
            self.peeked = None;
            self.orphans += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rows = std::vec::IntoIter<Result<(String, u32), Error>>;

    fn cursor(keys: &[&str]) -> Cursor<u32, Rows> {
        let rows: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Ok((k.to_string(), i as u32)))
            .collect();
        Cursor::new(Some(rows.into_iter()), "T", "UserId")
    }

    #[test]
    fn merges_and_counts_orphans() {
        let mut c = cursor(&["a", "b", "b", "c", "e", "z"]);
        let mut out = Vec::new();
        c.take_for("b", &mut out).unwrap();
        assert_eq!(out, [1, 2]);
        out.clear();
        c.take_for("d", &mut out).unwrap();
        assert!(out.is_empty());
        c.take_for("e", &mut out).unwrap();
        assert_eq!(out, [4]);
        c.drain().unwrap();
        assert_eq!((c.taken, c.orphans), (3, 3));
    }

    #[test]
    fn out_of_order_rows_are_an_error() {
        let mut c = cursor(&["b", "a"]);
        let mut out = Vec::new();
        let err = c.take_for("c", &mut out).unwrap_err();
        assert!(err.to_string().contains("`a` came after `b`"), "{err}");
    }
}
