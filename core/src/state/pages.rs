//! [`CowPages`]: a vector of any `Clone` element in copy-on-write pages, for operator state of
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

/// A growable vector in copy-on-write pages of `page_len` elements.
#[derive(Debug, Clone)]
pub struct CowPages<T> {
    pages: Vec<Arc<Vec<T>>>,
    page_len: usize,
    len: usize,
}

impl<T: Clone> CowPages<T> {
    /// An empty vector whose pages hold `page_len` elements (at least 1).
    pub fn new(page_len: usize) -> Self {
        CowPages {
            pages: Vec::new(),
            page_len: page_len.max(1),
            len: 0,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of pages (what a clone costs).
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// Appends `value`.
    pub fn push(&mut self, value: T) {
        if self.len % self.page_len == 0 {
            self.pages.push(Arc::new(Vec::with_capacity(self.page_len)));
        }
        let page = self.pages.last_mut().expect("a page was just ensured");
        Arc::make_mut(page).push(value);
        self.len += 1;
    }

    /// The `n` elements from `start`, which must lie in one page (rows of `n` elements in a
    /// vector whose page length is a multiple of `n`).
    ///
    /// # Panics
    /// When the range leaves the vector or crosses a page.
    #[inline]
    pub fn row(&self, start: usize, n: usize) -> &[T] {
        if n == 0 {
            return &[];
        }
        let (page, at) = self.place(start, n);
        &self.pages[page][at..at + n]
    }

    /// [`row`](Self::row), to write: copies the page first if a clone shares it.
    #[inline]
    pub fn row_mut(&mut self, start: usize, n: usize) -> &mut [T] {
        if n == 0 {
            return &mut [];
        }
        let (page, at) = self.place(start, n);
        &mut Arc::make_mut(&mut self.pages[page])[at..at + n]
    }

    /// The elements in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.pages.iter().flat_map(|p| p.iter())
    }

    #[inline]
    fn place(&self, start: usize, n: usize) -> (usize, usize) {
        let (page, at) = (start / self.page_len, start % self.page_len);
        assert!(
            start + n <= self.len && at + n <= self.page_len,
            "rows of {n} from {start} in {} elements in pages of {}",
            self.len,
            self.page_len
        );
        (page, at)
    }
}

impl<T: Clone> Index<usize> for CowPages<T> {
    type Output = T;

    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.row(i, 1)[0]
    }
}

impl<T: Clone> IndexMut<usize> for CowPages<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.row_mut(i, 1)[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_keeps_what_it_saw_while_the_original_changes() {
        let mut v = CowPages::new(4);
        for i in 0..10 {
            v.push(vec![i]);
        }
        assert_eq!((v.len(), v.page_count()), (10, 3));
        let frozen = v.clone();
        v[5].push(50);
        v.row_mut(8, 2)[1] = vec![90];
        v.push(vec![10]);
        assert_eq!(
            frozen.iter().cloned().collect::<Vec<_>>(),
            (0..10).map(|i| vec![i]).collect::<Vec<_>>()
        );
        assert_eq!(v[5], vec![5, 50]);
        assert_eq!(v.row(8, 2), &[vec![8], vec![90]]);
        assert_eq!(v.len(), 11);
        // the pages nobody wrote are still shared
        assert!(Arc::ptr_eq(&v.pages[0], &frozen.pages[0]));
        assert!(!Arc::ptr_eq(&v.pages[1], &frozen.pages[1]));
    }

    #[test]
    #[should_panic(expected = "rows of 2 from 3")]
    fn a_row_may_not_cross_a_page() {
        let mut v = CowPages::new(4);
        (0..8).for_each(|i| v.push(i));
        let _ = v.row(3, 2);
    }
}
