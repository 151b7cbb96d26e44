//! Rules for free text shared by every input: lengths count characters (not bytes) and
//! control characters (U+0000–U+001F, U+007F–U+009F) are refused everywhere, NUL included,
//! which PostgreSQL could not store anyway. Each rule matches a JSON Schema pattern in the
//! OpenAPI document, so clients can check input before sending it.

use std::borrow::Cow;

use validator::ValidationError;

/// JSON Schema pattern of [`plain`] text of 1–N characters (`{1,N}` filled in per field).
pub const NO_CONTROL_CHARACTERS: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";

pub fn problem(code: &'static str, message: impl Into<Cow<'static, str>>) -> ValidationError {
    ValidationError::new(code).with_message(message.into())
}

pub fn has_control_characters(value: &str) -> bool {
    value.chars().any(char::is_control)
}

/// `min`–`max` characters, none of them a control character.
pub fn plain(value: &str, min: usize, max: usize) -> Result<(), ValidationError> {
    let length = value.chars().count();
    if !(min..=max).contains(&length) {
        return Err(problem("length", format!("must be {min} to {max} characters")));
    }
    if has_control_characters(value) {
        return Err(problem("control_characters", "must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_characters_and_refuses_control_characters() {
        assert!(plain("é".repeat(50).as_str(), 1, 50).is_ok(), "50 characters, 100 bytes");
        assert!(plain("", 1, 50).is_err());
        assert!(plain("nul\0", 1, 50).is_err());
        assert!(plain("del\u{7f}", 1, 50).is_err());
        assert!(plain("c1\u{85}", 1, 50).is_err());
        assert!(plain("tab\t", 1, 50).is_err());
        assert!(plain("zero-width\u{200b}ok", 1, 50).is_ok(), "format characters are not control characters");
    }

    /// The code and the documented pattern agree.
    #[test]
    fn the_pattern_matches_the_rule() {
        let pattern = regex::Regex::new(NO_CONTROL_CHARACTERS).unwrap();
        for sample in ["plain", "é 📱", "a\u{0}", "\u{1f}", "\u{7f}", "\u{9f}", "\u{a0}ok", "line\nbreak"]
        {
            assert_eq!(pattern.is_match(sample), !has_control_characters(sample), "{sample:?}");
        }
    }
}
