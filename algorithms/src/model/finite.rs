//! The finiteness check of a decoded model: every `f32` and `f64` it holds must be finite.
//!
//! A model file with a valid checksum can still hold NaN or ±inf weights (written by a
//! diverged run, or by hand); such a model answers NaN for every row. [`check_finite`] walks
//! the decoded value through its own `Serialize` implementation — so it covers every model
//! type without per-type code — and names the first non-finite number by its field path
//! (`model.ftrl.slots[12][0]`). Feature pipelines travel as a JSON string inside the payload
//! (their split points may legitimately be ±inf) and are not walked; nor are weight tables
//! marked by `table`, which refuse non-finite numbers while they decode.

use std::fmt::{self, Display};

use serde::ser::{self, Serialize};

/// The first non-finite number found, as a message naming its path.
#[derive(Debug)]
pub(crate) struct NotFinite(String);

impl Display for NotFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFinite {}

impl ser::Error for NotFinite {
    fn custom<T: Display>(msg: T) -> Self {
        NotFinite(msg.to_string())
    }
}

/// Checks that every float in `value` is finite; the error names the first one that is not.
pub(crate) fn check_finite<T: Serialize + ?Sized>(value: &T) -> Result<(), String> {
    let mut walker = Walker { path: Vec::new() };
    value.serialize(&mut walker).map_err(|e| e.0)
}

/// One step of the path to a value.
enum Step {
    Field(&'static str),
    Index(usize),
}

/// A serializer that writes nothing and fails on the first non-finite float.
struct Walker {
    path: Vec<Step>,
}

impl Walker {
    fn path(&self) -> String {
        let mut out = String::new();
        for step in &self.path {
            match step {
                Step::Field(name) if out.is_empty() => out.push_str(name),
                Step::Field(name) => {
                    out.push('.');
                    out.push_str(name);
                }
                Step::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        if out.is_empty() {
            out.push_str("the value");
        }
        out
    }

    fn float(&self, v: f64) -> Result<(), NotFinite> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(NotFinite(format!(
                "`{}` is {v}: a model holds finite numbers only",
                self.path()
            )))
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &'static str, v: &T) -> Result<(), NotFinite> {
        self.path.push(Step::Field(name));
        v.serialize(&mut *self)?;
        self.path.pop();
        Ok(())
    }

    /// Serializes the next element of the sequence whose index is on top of the path.
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NotFinite> {
        v.serialize(&mut *self)?;
        if let Some(Step::Index(i)) = self.path.last_mut() {
            *i += 1;
        }
        Ok(())
    }

    fn open_seq(&mut self) -> &mut Self {
        self.path.push(Step::Index(0));
        self
    }

    fn close(&mut self) -> Result<(), NotFinite> {
        self.path.pop();
        Ok(())
    }
}

macro_rules! ignore {
    ($($name:ident: $ty:ty),* $(,)?) => {
        $(fn $name(self, _: $ty) -> Result<(), NotFinite> { Ok(()) })*
    };
}

impl ser::Serializer for &mut Walker {
    type Ok = ();
    type Error = NotFinite;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    ignore!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_char: char,
        serialize_str: &str, serialize_bytes: &[u8], serialize_unit_struct: &'static str,
    );

    fn serialize_f32(self, v: f32) -> Result<(), NotFinite> {
        self.float(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<(), NotFinite> {
        self.float(v)
    }

    fn serialize_none(self) -> Result<(), NotFinite> {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), NotFinite> {
        v.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), NotFinite> {
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), NotFinite> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<(), NotFinite> {
        if name == super::table::CHECKED_ON_DECODE {
            // Checked row by row while it decoded (see `table`).
            return Ok(());
        }
        v.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), NotFinite> {
        self.field(variant, v)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self, NotFinite> {
        Ok(self.open_seq())
    }

    fn serialize_tuple(self, _: usize) -> Result<Self, NotFinite> {
        Ok(self.open_seq())
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, NotFinite> {
        Ok(self.open_seq())
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, NotFinite> {
        self.path.push(Step::Field(variant));
        Ok(self.open_seq())
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self, NotFinite> {
        Ok(self.open_seq())
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, NotFinite> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, NotFinite> {
        self.path.push(Step::Field(variant));
        Ok(self)
    }
}

impl ser::SerializeSeq for &mut Walker {
    type Ok = ();
    type Error = NotFinite;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NotFinite> {
        self.element(v)
    }
    fn end(self) -> Result<(), NotFinite> {
        self.close()
    }
}

impl ser::SerializeTuple for &mut Walker {
    type Ok = ();
    type Error = NotFinite;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NotFinite> {
        self.element(v)
    }
    fn end(self) -> Result<(), NotFinite> {
        self.close()
    }
}

impl ser::SerializeTupleStruct for &mut Walker {
    type Ok = ();
    type Error = NotFinite;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NotFinite> {
        self.element(v)
    }
    fn end(self) -> Result<(), NotFinite> {
        self.close()
    }
}

impl ser::SerializeTupleVariant for &mut Walker {
    type Ok = ();
    type Error = NotFinite;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NotFinite> {
        self.element(v)
    }
    fn end(self) -> Result<(), NotFinite> {
        self.close()?;
        self.close()
    }
}

/// Map keys and values are walked as the elements of a sequence (the index counts entries).
impl ser::SerializeMap for &mut Walker {
    type Ok = ();
    type Error = NotFinite;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), NotFinite> {
        k.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), NotFinite> {
        self.element(v)
    }
    fn end(self) -> Result<(), NotFinite> {
        self.close()
    }
}

impl ser::SerializeStruct for &mut Walker {
    type Ok = ();
    type Error = NotFinite;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> Result<(), NotFinite> {
        self.field(name, v)
    }
    fn end(self) -> Result<(), NotFinite> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Walker {
    type Ok = ();
    type Error = NotFinite;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> Result<(), NotFinite> {
        self.field(name, v)
    }
    fn end(self) -> Result<(), NotFinite> {
        self.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Inner {
        w: Vec<[f32; 2]>,
    }

    #[derive(serde::Serialize)]
    enum Outer {
        Lin(Inner),
    }

    #[test]
    fn names_the_first_non_finite_number() {
        let ok = Outer::Lin(Inner {
            w: vec![[1.0, 2.0]; 3],
        });
        assert!(check_finite(&ok).is_ok());
        let mut w = vec![[1.0, 2.0]; 3];
        w[2][1] = f32::NAN;
        let e = check_finite(&Outer::Lin(Inner { w })).unwrap_err();
        assert!(e.contains("`Lin.w[2][1]` is NaN"), "{e}");
        let e = check_finite(&(0u8, f64::NEG_INFINITY)).unwrap_err();
        assert!(e.contains("`[1]` is -inf"), "{e}");
    }
}
