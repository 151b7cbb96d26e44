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

/// A JSON object whose keys and values are free (any JSON value), or null: what a
/// `serde_json::Value` column holds. utoipa documents `serde_json::Value` as `{}` (anything),
/// which generators turn into an untyped `Any`; `type: object` with `additionalProperties: true`
/// is a map of JSON values to them (`Map<String, JsonElement>` in Kotlin, `dict` in Python).
pub fn free_form_object_or_null(description: &str) -> Object {
    use utoipa::openapi::{
        Type,
        schema::{AdditionalProperties, ObjectBuilder, SchemaType},
    };
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .description(Some(description))
        .build()
}
