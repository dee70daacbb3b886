//! PKCS#11 numbers as open newtypes.
//!
//! openCryptoki stores attribute types, object classes and key types as plain
//! integers, and a rewriting tool must carry values it has never heard of
//! through unchanged. These newtypes therefore accept every value; the
//! associated constants name the ones this project (or its logs) care about, with
//! the values of `usr/include/pkcs11types.h` (openCryptoki's vendor-defined ones
//! included). `name()` gives the
//! PKCS#11 spelling for logs and dumps, or `None` for values without a name
//! here.

use std::fmt;

/// Defines an open newtype over an integer with named constants and `name()`.
macro_rules! open_newtype {
    (
        $(#[$meta:meta])*
        $ty:ident($inner:ty) {
            $( $(#[$cmeta:meta])* $konst:ident = $value:expr, $pname:literal; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(pub $inner);

        impl $ty {
            $(
                $(#[$cmeta])*
                #[doc = concat!("`", $pname, "`")]
                pub const $konst: $ty = $ty($value);
            )*

            /// The PKCS#11 name of this value, if it is one this crate knows.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( $ty::$konst => Some($pname), )*
                    _ => None,
                }
            }

            /// The raw numeric value.
            #[cfg(feature = "testkit")]
            pub fn value(self) -> $inner {
                self.0
            }
        }

        impl From<$inner> for $ty {
            fn from(v: $inner) -> Self {
                $ty(v)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        /// `NAME (0x..)`, or just the hex value for unnamed values.
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{} ({:#x})", n, self.0),
                    None => write!(f, "{:#x}", self.0),
                }
            }
        }
    };
}

open_newtype! {
    /// A `CK_ATTRIBUTE_TYPE` as stored in a flattened object (truncated to 32 bits, as
    /// `CK_ATTRIBUTE_32` of `usr/lib/common/template.c: template_flatten()`).
    AttrType(u32) {
        CLASS = 0x000, "CKA_CLASS";
        TOKEN = 0x001, "CKA_TOKEN";
        PRIVATE = 0x002, "CKA_PRIVATE";
        LABEL = 0x003, "CKA_LABEL";
        UNIQUE_ID = 0x004, "CKA_UNIQUE_ID";
        APPLICATION = 0x010, "CKA_APPLICATION";
        VALUE = 0x011, "CKA_VALUE";
        OBJECT_ID = 0x012, "CKA_OBJECT_ID";
        CERTIFICATE_TYPE = 0x080, "CKA_CERTIFICATE_TYPE";
        ISSUER = 0x081, "CKA_ISSUER";
        SERIAL_NUMBER = 0x082, "CKA_SERIAL_NUMBER";
        TRUSTED = 0x086, "CKA_TRUSTED";
        CERTIFICATE_CATEGORY = 0x087, "CKA_CERTIFICATE_CATEGORY";
        JAVA_MIDP_SECURITY_DOMAIN = 0x088, "CKA_JAVA_MIDP_SECURITY_DOMAIN";
        NAME_HASH_ALGORITHM = 0x08C, "CKA_NAME_HASH_ALGORITHM";
        CHECK_VALUE = 0x090, "CKA_CHECK_VALUE";
        KEY_TYPE = 0x100, "CKA_KEY_TYPE";
        SUBJECT = 0x101, "CKA_SUBJECT";
        ID = 0x102, "CKA_ID";
        SENSITIVE = 0x103, "CKA_SENSITIVE";
        ENCRYPT = 0x104, "CKA_ENCRYPT";
        DECRYPT = 0x105, "CKA_DECRYPT";
        WRAP = 0x106, "CKA_WRAP";
        UNWRAP = 0x107, "CKA_UNWRAP";
        SIGN = 0x108, "CKA_SIGN";
        SIGN_RECOVER = 0x109, "CKA_SIGN_RECOVER";
        VERIFY = 0x10A, "CKA_VERIFY";
        VERIFY_RECOVER = 0x10B, "CKA_VERIFY_RECOVER";
        DERIVE = 0x10C, "CKA_DERIVE";
        START_DATE = 0x110, "CKA_START_DATE";
        END_DATE = 0x111, "CKA_END_DATE";
        MODULUS = 0x120, "CKA_MODULUS";
        MODULUS_BITS = 0x121, "CKA_MODULUS_BITS";
        PUBLIC_EXPONENT = 0x122, "CKA_PUBLIC_EXPONENT";
        PRIVATE_EXPONENT = 0x123, "CKA_PRIVATE_EXPONENT";
        PRIME_1 = 0x124, "CKA_PRIME_1";
        PRIME_2 = 0x125, "CKA_PRIME_2";
        EXPONENT_1 = 0x126, "CKA_EXPONENT_1";
        EXPONENT_2 = 0x127, "CKA_EXPONENT_2";
        COEFFICIENT = 0x128, "CKA_COEFFICIENT";
        PUBLIC_KEY_INFO = 0x129, "CKA_PUBLIC_KEY_INFO";
        PRIME = 0x130, "CKA_PRIME";
        SUBPRIME = 0x131, "CKA_SUBPRIME";
        BASE = 0x132, "CKA_BASE";
        PRIME_BITS = 0x133, "CKA_PRIME_BITS";
        SUBPRIME_BITS = 0x134, "CKA_SUBPRIME_BITS";
        VALUE_BITS = 0x160, "CKA_VALUE_BITS";
        VALUE_LEN = 0x161, "CKA_VALUE_LEN";
        EXTRACTABLE = 0x162, "CKA_EXTRACTABLE";
        LOCAL = 0x163, "CKA_LOCAL";
        NEVER_EXTRACTABLE = 0x164, "CKA_NEVER_EXTRACTABLE";
        ALWAYS_SENSITIVE = 0x165, "CKA_ALWAYS_SENSITIVE";
        KEY_GEN_MECHANISM = 0x166, "CKA_KEY_GEN_MECHANISM";
        MODIFIABLE = 0x170, "CKA_MODIFIABLE";
        COPYABLE = 0x171, "CKA_COPYABLE";
        DESTROYABLE = 0x172, "CKA_DESTROYABLE";
        /// Also known as `CKA_ECDSA_PARAMS`.
        EC_PARAMS = 0x180, "CKA_EC_PARAMS";
        EC_POINT = 0x181, "CKA_EC_POINT";
        ALWAYS_AUTHENTICATE = 0x202, "CKA_ALWAYS_AUTHENTICATE";
        WRAP_WITH_TRUSTED = 0x210, "CKA_WRAP_WITH_TRUSTED";
        HW_FEATURE_TYPE = 0x300, "CKA_HW_FEATURE_TYPE";
        PROFILE_ID = 0x601, "CKA_PROFILE_ID";
        PARAMETER_SET = 0x61D, "CKA_PARAMETER_SET";
        ENCAPSULATE = 0x633, "CKA_ENCAPSULATE";
        DECAPSULATE = 0x634, "CKA_DECAPSULATE";
        WRAP_TEMPLATE = 0x4000_0211, "CKA_WRAP_TEMPLATE";
        UNWRAP_TEMPLATE = 0x4000_0212, "CKA_UNWRAP_TEMPLATE";
        DERIVE_TEMPLATE = 0x4000_0213, "CKA_DERIVE_TEMPLATE";
        ALLOWED_MECHANISMS = 0x4000_0600, "CKA_ALLOWED_MECHANISMS";
        ENCAPSULATE_TEMPLATE = 0x4000_062A, "CKA_ENCAPSULATE_TEMPLATE";
        DECAPSULATE_TEMPLATE = 0x4000_062B, "CKA_DECAPSULATE_TEMPLATE";
        VENDOR_DEFINED = 0x8000_0000, "CKA_VENDOR_DEFINED";
        /// The secure key blob of CCA and EP11 tokens.
        IBM_OPAQUE = 0x8000_0001, "CKA_IBM_OPAQUE";
        IBM_RESTRICTABLE = 0x8000_0002, "CKA_IBM_RESTRICTABLE";
        /// The blob re-enciphered under the new HSM master key during a change.
        IBM_OPAQUE_REENC = 0x8000_0003, "CKA_IBM_OPAQUE_REENC";
        /// The blob under the previous HSM master key after a change.
        IBM_OPAQUE_OLD = 0x8000_0004, "CKA_IBM_OPAQUE_OLD";
        IBM_DILITHIUM_KEYFORM = 0x800D_0001, "CKA_IBM_DILITHIUM_KEYFORM";
        IBM_KYBER_KEYFORM = 0x800D_0009, "CKA_IBM_KYBER_KEYFORM";
        IBM_PROTKEY_EXTRACTABLE = 0x8001_000C, "CKA_IBM_PROTKEY_EXTRACTABLE";
        IBM_PROTKEY_NEVER_EXTRACTABLE = 0x8001_000D, "CKA_IBM_PROTKEY_NEVER_EXTRACTABLE";
        IBM_PARAMETER_SET = 0x8001_0010, "CKA_IBM_PARAMETER_SET";
        IBM_OPAQUE_PKEY = 0x800D_0100, "CKA_IBM_OPAQUE_PKEY";
        IBM_CCA_AES_KEY_MODE = 0x800D_0101, "CKA_IBM_CCA_AES_KEY_MODE";
        IBM_CCA_ML_DSA_KEY_MODE = 0x800D_0102, "CKA_IBM_CCA_ML_DSA_KEY_MODE";
    }
}

impl AttrType {
    /// The six `CK_ULONG` attributes that openCryptoki narrows to 4 bytes in a
    /// flattened object (`usr/lib/common/template.c: template_flatten()` stores them as
    /// `CK_ULONG_32`). Every other `CK_ULONG` stays 8 bytes wide.
    pub const NARROWED: [AttrType; 6] = [
        AttrType::CLASS,
        AttrType::KEY_TYPE,
        AttrType::MODULUS_BITS,
        AttrType::VALUE_BITS,
        AttrType::CERTIFICATE_TYPE,
        AttrType::VALUE_LEN,
    ];

    /// Whether this type is stored as a 4-byte `CK_ULONG_32`.
    pub fn is_narrowed(self) -> bool {
        AttrType::NARROWED.contains(&self)
    }

    /// Whether the value may hold clear secret material, so that dumps show
    /// only its length unless asked otherwise.
    #[cfg(feature = "testkit")]
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            AttrType::VALUE
                | AttrType::PRIVATE_EXPONENT
                | AttrType::PRIME_1
                | AttrType::PRIME_2
                | AttrType::EXPONENT_1
                | AttrType::EXPONENT_2
                | AttrType::COEFFICIENT
        )
    }
}

open_newtype! {
    /// A `CK_OBJECT_CLASS`.
    ObjectClass(u64) {
        DATA = 0x0, "CKO_DATA";
        CERTIFICATE = 0x1, "CKO_CERTIFICATE";
        PUBLIC_KEY = 0x2, "CKO_PUBLIC_KEY";
        PRIVATE_KEY = 0x3, "CKO_PRIVATE_KEY";
        SECRET_KEY = 0x4, "CKO_SECRET_KEY";
        HW_FEATURE = 0x5, "CKO_HW_FEATURE";
        DOMAIN_PARAMETERS = 0x6, "CKO_DOMAIN_PARAMETERS";
        MECHANISM = 0x7, "CKO_MECHANISM";
        OTP_KEY = 0x8, "CKO_OTP_KEY";
        PROFILE = 0x9, "CKO_PROFILE";
        VALIDATION = 0xA, "CKO_VALIDATION";
        TRUST = 0xB, "CKO_TRUST";
        VENDOR_DEFINED = 0x8000_0000, "CKO_VENDOR_DEFINED";
    }
}

open_newtype! {
    /// A `CK_KEY_TYPE`.
    KeyType(u64) {
        RSA = 0x00, "CKK_RSA";
        DSA = 0x01, "CKK_DSA";
        DH = 0x02, "CKK_DH";
        /// Also known as `CKK_ECDSA`.
        EC = 0x03, "CKK_EC";
        GENERIC_SECRET = 0x10, "CKK_GENERIC_SECRET";
        DES = 0x13, "CKK_DES";
        DES2 = 0x14, "CKK_DES2";
        DES3 = 0x15, "CKK_DES3";
        AES = 0x1F, "CKK_AES";
        SHA_1_HMAC = 0x28, "CKK_SHA_1_HMAC";
        SHA256_HMAC = 0x2B, "CKK_SHA256_HMAC";
        SHA384_HMAC = 0x2C, "CKK_SHA384_HMAC";
        SHA512_HMAC = 0x2D, "CKK_SHA512_HMAC";
        SHA224_HMAC = 0x2E, "CKK_SHA224_HMAC";
        AES_XTS = 0x35, "CKK_AES_XTS";
        EC_EDWARDS = 0x40, "CKK_EC_EDWARDS";
        EC_MONTGOMERY = 0x41, "CKK_EC_MONTGOMERY";
        ML_KEM = 0x49, "CKK_ML_KEM";
        ML_DSA = 0x4A, "CKK_ML_DSA";
        VENDOR_DEFINED = 0x8000_0000, "CKK_VENDOR_DEFINED";
        /// Also known as `CKK_IBM_DILITHIUM`.
        IBM_PQC_DILITHIUM = 0x8001_0023, "CKK_IBM_PQC_DILITHIUM";
        /// Also known as `CKK_IBM_KYBER`.
        IBM_PQC_KYBER = 0x8001_0024, "CKK_IBM_PQC_KYBER";
        IBM_ML_DSA = 0x8001_0025, "CKK_IBM_ML_DSA";
        IBM_ML_KEM = 0x8001_0026, "CKK_IBM_ML_KEM";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_pass_through() {
        let t = AttrType(0x4000_062C);
        assert_eq!(t.name(), None);
        assert_eq!(t.value(), 0x4000_062C);
        assert_eq!(t.to_string(), "0x4000062c");
        assert_eq!(KeyType(0x1234).name(), None);
        assert_eq!(ObjectClass(0x77).to_string(), "0x77");
    }

    #[test]
    fn names_and_narrowing() {
        assert_eq!(AttrType::IBM_OPAQUE.value(), 0x8000_0001);
        assert_eq!(AttrType(0x8000_0001).name(), Some("CKA_IBM_OPAQUE"));
        assert_eq!(AttrType::VALUE_LEN.to_string(), "CKA_VALUE_LEN (0x161)");
        assert!(AttrType::CERTIFICATE_TYPE.is_narrowed());
        assert!(!AttrType::KEY_GEN_MECHANISM.is_narrowed());
        assert_eq!(KeyType::AES.name(), Some("CKK_AES"));
        assert_eq!(ObjectClass::SECRET_KEY.name(), Some("CKO_SECRET_KEY"));
    }
}
