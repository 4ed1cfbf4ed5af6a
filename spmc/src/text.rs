//! Cheap text for log lines and error messages.
//!
//! In a warn-level release image what formatting costs is the code the
//! warn!/error! lines reach. A `{}` of a `&str` goes through
//! `Formatter::pad` (width and precision handling nobody asks for there);
//! [`Text`] writes the string as it is, so with every string argument of
//! those lines wrapped in it the image carries no padding code for
//! strings. Likewise [`Hex`] prints a number as `{:#x}` would, without
//! core's integer formatting (`pad_integral`, the fill and width code and
//! one `LowerHex` per integer type): numbers in those lines are hex only.

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

/// A number printed as `{:#x}` prints it (`0x` and lower-case digits, no
/// leading zeros), with one `write_str`.
#[derive(Clone, Copy, Debug)]
pub struct Hex(pub u64);

/// [`Hex`] of any unsigned number up to 64 bits.
pub fn hex(n: impl Into<u64>) -> Hex {
    Hex(n.into())
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 18];
        let mut i = buf.len();
        let mut n = self.0;
        loop {
            i -= 1;
            buf[i] = b"0123456789abcdef"[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        i -= 2;
        buf[i] = b'0';
        buf[i + 1] = b'x';
        // Only ASCII was written, so this never fails.
        f.write_str(core::str::from_utf8(&buf[i..]).unwrap_or("0x?"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;

    #[test]
    fn text_is_written_as_it_is() {
        assert_eq!(format!("[{}]", Text("ab")), "[ab]");
        assert_eq!(
            format!("[{:>6.1}]", Text("ab")),
            "[ab]",
            "no padding, no cut"
        );
    }

    #[test]
    fn hex_prints_as_the_alternate_lower_hex_format() {
        for n in [
            0,
            1,
            9,
            0xa,
            0xf,
            0x10,
            0x8001,
            0xdead_beef,
            u64::MAX,
            1 << 63,
        ] {
            assert_eq!(Hex(n).to_string(), format!("{n:#x}"));
        }
        assert_eq!(hex(0x28u32).to_string(), "0x28");
        assert_eq!(hex(0xffffu16).to_string(), "0xffff");
    }
}
