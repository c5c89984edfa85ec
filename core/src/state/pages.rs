//! [`CowPages`]: rows of any `Clone` element in copy-on-write pages, for operator state of
//! variable-size rows (a window's slots with their keys, its accumulators).
//!
//! [`CowPages::freeze`] moves every page into an `Arc` and hands out a [`FrozenPages`] copy of
//! the pointers — O(number of pages), no element is copied — so an operator freezes its state
//! at a barrier in microseconds and lets the task's background writer serialize the copy. The
//! first write to a shared page copies it (or takes it back if the copy is gone), so the cost
//! of the snapshot moves to the writes after it, spread over the pages they touch; pages the
//! vector owns are written in place, with no atomic operation per access. Unlike [`ChunkedTable`](super::ChunkedTable) it has no
//! incremental write: its elements have no fixed width to reference by offset.

use std::ops::{Index, IndexMut};
use std::sync::Arc;

/// Rows per page, as a shift: a row's page and place are a shift and a mask, no division.
const PAGE_SHIFT: u32 = 10;
/// Rows per page.
pub const PAGE_ROWS: usize = 1 << PAGE_SHIFT;

/// One page: the vector's own (written in place, no atomic operation), or shared with a frozen
/// copy (copied, or taken back when the copy is gone, at its first write).
#[derive(Debug)]
enum Page<T> {
    Owned(Vec<T>),
    Shared(Arc<Vec<T>>),
}

impl<T: Clone> Page<T> {
    #[inline]
    fn get(&self) -> &[T] {
        match self {
            Page::Owned(v) => v,
            Page::Shared(a) => a,
        }
    }

    /// The page as the vector's own: a shared page is taken back when no frozen copy holds it
    /// any more, else copied.
    #[inline]
    fn own(&mut self) -> &mut Vec<T> {
        if let Page::Shared(_) = self {
            if let Page::Shared(a) = std::mem::replace(self, Page::Owned(Vec::new())) {
                *self = Page::Owned(Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone()));
            }
        }
        match self {
            Page::Owned(v) => v,
            Page::Shared(_) => unreachable!("made owned above"),
        }
    }

    /// Shares the page (O(1): the vector moves into an `Arc`), returning the shared handle.
    fn share(&mut self) -> Arc<Vec<T>> {
        if let Page::Owned(v) = self {
            *self = Page::Shared(Arc::new(std::mem::take(v)));
        }
        match self {
            Page::Shared(a) => a.clone(),
            Page::Owned(_) => unreachable!("made shared above"),
        }
    }
}

/// A growable vector of rows of `width` elements, in copy-on-write pages of [`PAGE_ROWS`] rows.
#[derive(Debug)]
pub struct CowPages<T> {
    pages: Vec<Page<T>>,
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

    /// Number of pages (what [`freeze`](Self::freeze) costs).
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
                .push(Page::Owned(Vec::with_capacity(PAGE_ROWS * self.width)));
        }
        let page = self
            .pages
            .last_mut()
            .expect("a page was just ensured")
            .own();
        let before = page.len();
        page.extend(row);
        assert_eq!(page.len() - before, self.width, "a row of the wrong width");
        self.rows += 1;
    }

    /// Appends a row of one element.
    pub fn push(&mut self, value: T) {
        self.push_row([value]);
    }

    /// Row `i` (panics past the end, like a slice).
    #[inline]
    pub fn row(&self, i: usize) -> &[T] {
        let at = (i & (PAGE_ROWS - 1)) * self.width;
        &self.pages[i >> PAGE_SHIFT].get()[at..at + self.width]
    }

    /// Row `i`, to write (panics past the end): its page is copied first if a frozen copy
    /// still holds it.
    #[inline]
    pub fn row_mut(&mut self, i: usize) -> &mut [T] {
        let at = (i & (PAGE_ROWS - 1)) * self.width;
        &mut self.pages[i >> PAGE_SHIFT].own()[at..at + self.width]
    }

    /// The rows as they are now, in O(pages): every page becomes shared with the copy, and
    /// the first later write to a page copies it (or takes it back once the copy is dropped).
    pub fn freeze(&mut self) -> FrozenPages<T> {
        FrozenPages {
            pages: self.pages.iter_mut().map(Page::share).collect(),
            width: self.width,
            rows: self.rows,
        }
    }
}

/// [`CowPages`] frozen for a snapshot: read only, sendable to the writer's thread.
#[derive(Debug, Clone)]
pub struct FrozenPages<T> {
    pages: Vec<Arc<Vec<T>>>,
    width: usize,
    rows: usize,
}

impl<T> FrozenPages<T> {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether it holds no row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Row `i` (panics past the end, like a slice).
    pub fn row(&self, i: usize) -> &[T] {
        let at = (i & (PAGE_ROWS - 1)) * self.width;
        &self.pages[i >> PAGE_SHIFT][at..at + self.width]
    }
}

/// The element of row `i` of a vector of one-element rows.
impl<T: Clone> Index<usize> for CowPages<T> {
    type Output = T;

    #[inline]
    fn index(&self, i: usize) -> &T {
        debug_assert_eq!(self.width, 1, "indexing is for one-element rows");
        &self.pages[i >> PAGE_SHIFT].get()[i & (PAGE_ROWS - 1)]
    }
}

impl<T: Clone> IndexMut<usize> for CowPages<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        debug_assert_eq!(self.width, 1, "indexing is for one-element rows");
        &mut self.pages[i >> PAGE_SHIFT].own()[i & (PAGE_ROWS - 1)]
    }
}

/// The element of row `i` of frozen one-element rows.
impl<T> Index<usize> for FrozenPages<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        &self.row(i)[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_copy_keeps_what_it_saw_while_the_vector_changes() {
        let rows = 2 * PAGE_ROWS + 10;
        let mut v = CowPages::new(2);
        for i in 0..rows {
            v.push_row([vec![i], vec![i + 1]]);
        }
        assert_eq!((v.len(), v.page_count()), (rows, 3));
        let frozen = v.freeze();
        v.row_mut(PAGE_ROWS + 5)[1].push(50);
        v.push_row([vec![0], vec![0]]);
        let before = |i: usize| [vec![i], vec![i + 1]];
        assert!((0..rows).all(|i| frozen.row(i) == before(i)));
        assert_eq!(frozen.len(), rows);
        assert_eq!(v.row(PAGE_ROWS + 5)[1], vec![PAGE_ROWS + 6, 50]);
        assert_eq!(v.len(), rows + 1);
        // the pages nobody wrote are still shared; the written one was copied
        assert!(matches!(&v.pages[0], Page::Shared(a) if Arc::ptr_eq(a, &frozen.pages[0])));
        assert!(matches!(v.pages[1], Page::Owned(_)));
        // once the copy is gone a page is taken back, not copied
        let ptr = frozen.pages[0].as_ptr();
        drop(frozen);
        v.row_mut(0)[0].push(1);
        assert!(matches!(&v.pages[0], Page::Owned(p) if p.as_ptr() == ptr));
    }

    #[test]
    fn rows_of_no_element_take_no_room() {
        let mut v: CowPages<u8> = CowPages::new(0);
        v.push_row([]);
        assert_eq!((v.len(), v.row(0)), (1, &[][..]));
    }

    #[test]
    #[should_panic]
    fn there_is_no_row_past_the_end() {
        let mut v = CowPages::new(1);
        (0..3).for_each(|i| v.push(i));
        let _ = v.row(3);
    }
}
