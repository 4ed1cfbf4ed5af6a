//! Cheap text for log lines and error messages.
//!
//! In a warn-level release image what formatting costs is the code the
//! warn!/error! lines reach. A `{}` of a `&str` goes through
//! `Formatter::pad` (width and precision handling nobody asks for there);
//! [`Text`] writes the string as it is, so with every string argument of
//! those lines wrapped in it the image carries no padding code for
//! strings. (Numbers are printed in hex only, `{:#x}`, for the same
//! reason: one integer formatter.)

use core::fmt;

/// A string printed as it is (`Formatter::write_str`: no width, no
/// precision).
#[derive(Clone, Copy, Debug)]
pub struct Text<'a>(pub &'a str);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn text_is_written_as_it_is() {
        assert_eq!(format!("[{}]", Text("ab")), "[ab]");
        assert_eq!(
            format!("[{:>6.1}]", Text("ab")),
            "[ab]",
            "no padding, no cut"
        );
    }
}
