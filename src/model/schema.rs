//! OpenAPI helpers for types whose wire shape utoipa's derive cannot state on its own.

use utoipa::openapi::{
    RefOr,
    schema::{Object, Schema},
};

/// The object schema of a type, for composing it into another.
///
/// Panics when the type's schema is not an inline object: a programming error that the
/// contract tests (which build the whole document) catch at once.
pub fn object_of<T: utoipa::PartialSchema>() -> Object {
    match T::schema() {
        RefOr::T(Schema::Object(object)) => object,
        _ => panic!("{} is documented as an inline object", std::any::type_name::<T>()),
    }
}

/// `#[serde(flatten)]` as the wire has it: `inner`'s properties (and required list) appended to
/// `outer`, one flat object. utoipa's derive would document it as an `allOf` of two schemas,
/// which generated clients turn into class hierarchies for no reason.
pub fn flattened(mut outer: Object, inner: Object) -> Object {
    outer.properties.extend(inner.properties);
    outer.required.extend(inner.required);
    outer
}
