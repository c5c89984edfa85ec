//! [`CowPages`]: rows of any `Clone` element in copy-on-write pages, for operator state of
//! variable-size rows (a window's slots with their keys, its accumulators).
//!
//! Cloning one clones the page pointers — O(number of pages), no element is copied — so an
//! operator freezes its state at a barrier in microseconds and lets the task's background
//! writer serialize the frozen copy. The first write to a page after such a clone copies that
//! page alone (`Arc::make_mut`): the cost of the snapshot moves to the writes after it, spread
//! over the pages they touch. Unlike [`ChunkedTable`](super::ChunkedTable) it has no
//! incremental write: its elements have no fixed width to reference by offset.

use std::ops::{Index, IndexMut};
use std::sync::Arc;

/// Rows per page, as a shift: a row's page and place are a shift and a mask, no division.
const PAGE_SHIFT: u32 = 10;
/// Rows per page.
pub const PAGE_ROWS: usize = 1 << PAGE_SHIFT;

/// A growable vector of rows of `width` elements, in copy-on-write pages of [`PAGE_ROWS`] rows.
#[derive(Debug, Clone)]
pub struct CowPages<T> {
    pages: Vec<Arc<Vec<T>>>,
    width: usize,
    rows: usize,
}

impl<T: Clone> CowPages<T> {
    /// An empty vector of rows of `width` elements (a width of 0 holds rows of nothing).
    pub fn new(width: usize) -> Self {
        CowPages {
            pages: Vec::new(),
            width,
            rows: 0,
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether it holds no row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Number of pages (what a clone costs).
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// Appends a row: `row` must hold `width` elements.
    ///
    /// # Panics
    /// When it does not (a bug in the caller).
    pub fn push_row(&mut self, row: impl IntoIterator<Item = T>) {
        if self.rows % PAGE_ROWS == 0 {
            self.pages
                .push(Arc::new(Vec::with_capacity(PAGE_ROWS * self.width)));
        }
        let page = Arc::make_mut(self.pages.last_mut().expect("a page was just ensured"));
        let before = page.len();
        page.extend(row);
        assert_eq!(page.len() - before, self.width, "a row of the wrong width");
        self.rows += 1;
    }

    /// Appends a row of one element.
    pub fn push(&mut self, value: T) {
        self.push_row([value]);
    }

    /// Row `i`.
    ///
    /// # Panics
    /// When there is no row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> &[T] {
        assert!(i < self.rows, "row {i} of {}", self.rows);
        let at = (i & (PAGE_ROWS - 1)) * self.width;
        &self.pages[i >> PAGE_SHIFT][at..at + self.width]
    }

    /// Row `i`, to write: copies its page first if a clone shares it.
    #[inline]
    pub fn row_mut(&mut self, i: usize) -> &mut [T] {
        assert!(i < self.rows, "row {i} of {}", self.rows);
        let at = (i & (PAGE_ROWS - 1)) * self.width;
        &mut Arc::make_mut(&mut self.pages[i >> PAGE_SHIFT])[at..at + self.width]
    }

    /// The elements in order, row after row.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.pages.iter().flat_map(|p| p.iter())
    }
}

/// The element of row `i` of a vector of one-element rows.
impl<T: Clone> Index<usize> for CowPages<T> {
    type Output = T;

    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.row(i)[0]
    }
}

impl<T: Clone> IndexMut<usize> for CowPages<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.row_mut(i)[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_keeps_what_it_saw_while_the_original_changes() {
        let rows = 2 * PAGE_ROWS + 10;
        let mut v = CowPages::new(2);
        for i in 0..rows {
            v.push_row([vec![i], vec![i + 1]]);
        }
        assert_eq!((v.len(), v.page_count()), (rows, 3));
        let frozen = v.clone();
        v.row_mut(PAGE_ROWS + 5)[1].push(50);
        v.push_row([vec![0], vec![0]]);
        let before = |i: usize| [vec![i], vec![i + 1]];
        assert!((0..rows).all(|i| frozen.row(i) == before(i)));
        assert_eq!(frozen.len(), rows);
        assert_eq!(v.row(PAGE_ROWS + 5)[1], vec![PAGE_ROWS + 6, 50]);
        assert_eq!(v.len(), rows + 1);
        // the pages nobody wrote are still shared
        assert!(Arc::ptr_eq(&v.pages[0], &frozen.pages[0]));
        assert!(!Arc::ptr_eq(&v.pages[1], &frozen.pages[1]));
    }

    #[test]
    fn rows_of_no_element_take_no_room() {
        let mut v: CowPages<u8> = CowPages::new(0);
        v.push_row([]);
        assert_eq!((v.len(), v.row(0)), (1, &[][..]));
    }

    #[test]
    #[should_panic(expected = "row 3 of 3")]
    fn there_is_no_row_past_the_end() {
        let mut v = CowPages::new(1);
        (0..3).for_each(|i| v.push(i));
        let _ = v.row(3);
    }
}
