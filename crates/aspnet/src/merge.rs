//! The ordered merge: child rows sorted by user id, consumed alongside users sorted by
//! id. Memory holds one peeked row per child table, whatever the number of users. Keys
//! are compared typed ([`Key`]), in the order the engine sorted them.

use crate::key::Key;
use crate::Error;

/// A cursor over `(parent key, item)` pairs in ascending key order.
pub(crate) struct Cursor<T, I: Iterator<Item = Result<(Key, T), Error>>> {
    rows: Option<I>,
    peeked: Option<(Key, T)>,
    last_key: Option<Key>,
    table: String,
    key_column: String,
    /// Items read and handed to a parent.
    pub taken: u64,
    /// Items whose parent does not exist.
    pub orphans: u64,
}

impl<T, I: Iterator<Item = Result<(Key, T), Error>>> Cursor<T, I> {
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
    pub fn peek(&mut self) -> Result<Option<&Key>, Error> {
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
                        if key < *last {
                            return Err(Error::Order {
                                table: self.table.clone(),
                                column: self.key_column.clone(),
                                message: format!("`{key}` came after `{last}`"),
                            });
                        }
                    }
                    self.peeked = Some((key, value));
                }
            }
        }
        Ok(self.peeked.as_ref().map(|(k, _)| k))
    }

    /// Moves every item of `parent` into `out`, counting as orphans the items whose key
    /// sorts before it (their parent was not in the parent stream).
    pub fn take_for(&mut self, parent: &Key, out: &mut Vec<T>) -> Result<(), Error> {
        while let Some(key) = self.peek()? {
            match key.cmp(parent) {
                std::cmp::Ordering::Less => {
                    self.consume();
                    self.orphans += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push(self.consume());
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
            self.consume();
            self.orphans += 1;
        }
        Ok(())
    }

    /// Takes the peeked row; its key, moved rather than copied, is the one the next row's
    /// must not come before.
    fn consume(&mut self) -> T {
        let (key, item) = self.peeked.take().expect("a row was peeked");
        self.last_key = Some(key);
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rows = std::vec::IntoIter<Result<(Key, u32), Error>>;

    fn cursor(keys: Vec<Key>) -> Cursor<u32, Rows> {
        let rows: Vec<_> = keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| Ok((k, i as u32)))
            .collect();
        Cursor::new(Some(rows.into_iter()), "T", "UserId")
    }

    fn text(keys: &[&str]) -> Vec<Key> {
        keys.iter().map(|k| Key::Text(k.to_string())).collect()
    }

    #[test]
    fn merges_and_counts_orphans() {
        let mut c = cursor(text(&["a", "b", "b", "c", "e", "z"]));
        let mut out = Vec::new();
        c.take_for(&Key::Text("b".into()), &mut out).unwrap();
        assert_eq!(out, [1, 2]);
        out.clear();
        c.take_for(&Key::Text("d".into()), &mut out).unwrap();
        assert!(out.is_empty());
        c.take_for(&Key::Text("e".into()), &mut out).unwrap();
        assert_eq!(out, [4]);
        c.drain().unwrap();
        assert_eq!((c.taken, c.orphans), (3, 3));
    }

    #[test]
    fn integer_keys_merge_in_numeric_order() {
        // Regression: `IdentityUser<int>` failed with "`10` came after `9`".
        let keys = [1, 2, 9, 10, 10, 11, 100].map(Key::Integer).to_vec();
        let mut c = cursor(keys);
        let mut out = Vec::new();
        c.take_for(&Key::Integer(9), &mut out).unwrap();
        assert_eq!(out, [2]);
        out.clear();
        c.take_for(&Key::Integer(10), &mut out).unwrap();
        assert_eq!(out, [3, 4]);
        c.drain().unwrap();
        assert_eq!((c.taken, c.orphans), (3, 4));
    }

    #[test]
    fn out_of_order_rows_are_an_error() {
        let mut c = cursor(text(&["b", "a"]));
        let mut out = Vec::new();
        let err = c.take_for(&Key::Text("c".into()), &mut out).unwrap_err();
        assert!(err.to_string().contains("`a` came after `b`"), "{err}");
    }
}
