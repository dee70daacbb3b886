//! C signatures of the CCA verbs: one table, from which everything else is made.
//!
//! Every CCA verb returns `void` and reports status through its first two
//! parameters; every integer is a `long *` (64 bits on LP64 Linux) and every
//! byte string an `unsigned char *` (one `void *`), as openCryptoki declares
//! them in `usr/lib/cca_stdll/csulincl.h` (3.8.1: `usr/lib/pkcs11/cca_stdll/csulincl.h`,
//! the same declarations for every verb listed here).
//!
//! [`cca_verb_table!`](crate::cca_verb_table) holds those signatures once.
//! It hands the table to a macro of the caller's, which turns it into:
//! * here, the function-pointer types in [`fns`] and (with `testkit`) the symbol list
//!   `ALL_VERBS`;
//! * in `cca::mod`, the [`Verb`](super::Verb) enum;
//! * in `cca::ffi`, the resolved pointers, and per verb an argument struct
//!   (every length 0, every pointer NULL unless set) and a call method that
//!   supplies the common status prefix;
//! * in the software CCA (`tests/csulcca-emu/src/exports.rs`), the exported
//!   `extern "C"` entry points.

use std::os::raw::{c_long, c_uchar, c_void};

/// Pointer to a `long` parameter.
pub type PLong = *mut c_long;
/// Pointer to a byte-string parameter.
pub type PBytes = *mut c_uchar;
/// An untyped pointer parameter (CSNBKTB's `reserved_field_1`, a testkit verb).
#[cfg_attr(not(feature = "testkit"), allow(dead_code))]
pub type PVoid = *mut c_void;

/// The CCA verb table: calls `$then! { .. }` with the table as its input,
/// in sections (`cca_verb_table!(then)`) or flat (`cca_verb_table!(then, flat)`).
///
/// Each row is `Variant NAME(parameters);`: the `cca::Verb`
/// variant, the C symbol, and the parameters after the common prefix
/// `long *return_code, long *reason_code, long *exit_data_length,
/// unsigned char *exit_data`, which every verb shares and no row repeats.
/// Parameter names and order are `csulincl.h`'s; types are the tokens
/// `PLong`, `PBytes` and `PVoid` (the aliases of `cca::abi`).
///
/// The rows are grouped by who calls the verb:
/// * `pkcscca`: the verbs the migration modes call;
/// * `testkit`: verbs only tests, benches and the emulator's tools call
///   (compiled into `pkcscca` with the `testkit` feature only);
/// * `emulator`: verbs only the software CCA implements (openCryptoki's
///   token calls them);
/// * `unimplemented`: the remaining names that openCryptoki's CCA token
///   (3.8.1 and current), pkcscca and zkey resolve, without signatures (the
///   emulator answers them through the status prefix alone). CSUAPCV, which
///   3.8.1 resolves, has no declaration in `csulincl.h` at all.
///
/// In sections, `$then` receives
/// `pkcscca { rows } testkit { rows } emulator { rows } unimplemented [ names ]`;
/// flat, `unimplemented [ names ]` and then every row, in the same order.
#[macro_export]
macro_rules! cca_verb_table {
    ($then:ident $(, $view:ident)?) => {
        $crate::__cca_verb_view! { $then [$($view)?]
            pkcscca {
                /// CSNBKTC (Key Token Change): 64-byte DES and AES DATA tokens, in place.
                Csnbktc CSNBKTC(rule_array_count: PLong, rule_array: PBytes,
                    key_identifier: PBytes);
                /// CSNBKTC2 (Key Token Change2): variable-length AES CIPHER and HMAC tokens.
                Csnbktc2 CSNBKTC2(rule_array_count: PLong, rule_array: PBytes,
                    key_identifier_length: PLong, key_identifier: PBytes);
                /// CSNDKTC (PKA Key Token Change): RSA, ECC and QSA private tokens.
                Csndktc CSNDKTC(rule_array_count: PLong, rule_array: PBytes, key_id_length: PLong,
                    key_id: PBytes);
                /// CSUACFQ (Cryptographic Facility Query): master-key register states and MKVPs.
                Csuacfq CSUACFQ(rule_array_count: PLong, rule_array: PBytes,
                    verb_data_length: PLong, verb_data: PBytes);
                /// CSNBDEC (Decipher, DES/TDES): the objects of an openCryptoki 2.x store.
                Csnbdec CSNBDEC(key_identifier: PBytes, text_length: PLong, ciphertext: PBytes,
                    initialization_vector: PBytes, rule_array_count: PLong, rule_array: PBytes,
                    chaining_vector: PBytes, plaintext: PBytes);
                /// CSNDPKT (PKA Key Translate): RSA-CRT `X'08'` to RSA-AESC `X'31'`.
                Csndpkt CSNDPKT(rule_array_count: PLong, rule_array: PBytes,
                    source_key_identifier_length: PLong, source_key_identifier: PBytes,
                    source_transport_key_identifier_length: PLong,
                    source_transport_key_identifier: PBytes,
                    target_transport_key_identifier_length: PLong,
                    target_transport_key_identifier: PBytes, target_key_token_length: PLong,
                    target_key_token: PBytes);
                /// CSNDPKX (PKA Public Key Extract): the external public token of a private one.
                Csndpkx CSNDPKX(rule_array_count: PLong, rule_array: PBytes,
                    source_key_identifier_length: PLong, source_key_identifier: PBytes,
                    target_key_token_length: PLong, target_key_token: PBytes);
            }
            testkit {
                /// CSUACFV (Cryptographic Facility Version).
                Csuacfv CSUACFV(version_data_length: PLong, version_data: PBytes);
                /// CSNBMKP (Master Key Process): load and set master-key registers.
                Csnbmkp CSNBMKP(rule_array_count: PLong, rule_array: PBytes, key_part: PBytes);
                /// CSNBENC (Encipher, DES/TDES).
                Csnbenc CSNBENC(key_identifier: PBytes, text_length: PLong, plaintext: PBytes,
                    initialization_vector: PBytes, rule_array_count: PLong, rule_array: PBytes,
                    pad_character: PLong, chaining_vector: PBytes, ciphertext: PBytes);
                /// CSNBSAE (Symmetric Algorithm Encipher, AES).
                Csnbsae CSNBSAE(rule_array_count: PLong, rule_array: PBytes, key_length: PLong,
                    key_identifier: PBytes, key_parms_length: PLong, key_parms: PBytes,
                    block_size: PLong, initialization_vector_length: PLong,
                    initialization_vector: PBytes, chain_data_length: PLong, chain_data: PBytes,
                    clear_text_length: PLong, clear_text: PBytes, cipher_text_length: PLong,
                    cipher_text: PBytes, optional_data_length: PLong, optional_data: PBytes);
                /// CSNBSAD (Symmetric Algorithm Decipher, AES).
                Csnbsad CSNBSAD(rule_array_count: PLong, rule_array: PBytes, key_length: PLong,
                    key_identifier: PBytes, key_parms_length: PLong, key_parms: PBytes,
                    block_size: PLong, initialization_vector_length: PLong,
                    initialization_vector: PBytes, chain_data_length: PLong, chain_data: PBytes,
                    cipher_text_length: PLong, cipher_text: PBytes, clear_text_length: PLong,
                    clear_text: PBytes, optional_data_length: PLong, optional_data: PBytes);
                /// CSNDDSG (Digital Signature Generate).
                Csnddsg CSNDDSG(rule_array_count: PLong, rule_array: PBytes,
                    PKA_private_key_id_length: PLong, PKA_private_key_id: PBytes,
                    hash_length: PLong, hash: PBytes, signature_field_length: PLong,
                    signature_bit_length: PLong, signature_field: PBytes);
                /// CSNDDSV (Digital Signature Verify).
                Csnddsv CSNDDSV(rule_array_count: PLong, rule_array: PBytes,
                    PKA_public_key_id_length: PLong, PKA_public_key_id: PBytes, hash_length: PLong,
                    hash: PBytes, signature_field_length: PLong, signature_field: PBytes);
                /// CSNBKGN (Key Generate): DES and AES DATA tokens.
                Csnbkgn CSNBKGN(key_form: PBytes, key_length: PBytes, key_type_1: PBytes,
                    key_type_2: PBytes, KEK_key_identifier_1: PBytes, KEK_key_identifier_2: PBytes,
                    generated_key_identifier_1: PBytes, generated_key_identifier_2: PBytes);
                /// CSNBKTB (Key Token Build): 64-byte skeletons.
                Csnbktb CSNBKTB(key_token: PBytes, key_type: PBytes, rule_array_count: PLong,
                    rule_array: PBytes, key_value: PBytes, reserved_field_1: PVoid,
                    reserved_field_2: PLong, reserved_field_3: PBytes, control_vector: PBytes,
                    reserved_field_4: PBytes, reserved_field_5: PLong, reserved_field_6: PBytes,
                    master_key_verification_number: PBytes);
                /// CSNDPKB (PKA Key Token Build): skeletons from a key-value structure.
                Csndpkb CSNDPKB(rule_array_count: PLong, rule_array: PBytes,
                    key_values_structure_length: PLong, key_values_structure: PBytes,
                    key_name_ln: PLong, key_name: PBytes, customer_data_length: PLong,
                    customer_data: PBytes, reserved_2_length: PLong, reserved_2: PBytes,
                    reserved_3_length: PLong, reserved_3: PBytes, reserved_4_length: PLong,
                    reserved_4: PBytes, reserved_5_length: PLong, reserved_5: PBytes,
                    token_length: PLong, token: PBytes);
                /// CSNDPKG (PKA Key Generate).
                Csndpkg CSNDPKG(rule_array_count: PLong, rule_array: PBytes,
                    regeneration_data_length: PLong, regeneration_data: PBytes,
                    skeleton_key_token_length: PLong, skeleton_key_token: PBytes,
                    transport_key_identifier: PBytes, generated_key_identifier_length: PLong,
                    generated_key_identifier: PBytes);
                /// CSNBKTB2 (Key Token Build2): variable-length skeletons.
                Csnbktb2 CSNBKTB2(rule_array_count: PLong, rule_array: PBytes,
                    clear_key_bit_length: PLong, clear_key_value: PBytes, key_name_length: PLong,
                    key_name: PBytes, user_associated_data_length: PLong,
                    user_associated_data: PBytes, token_data_length: PLong, token_data: PBytes,
                    reserved_length: PLong, reserved: PBytes, target_key_token_length: PLong,
                    target_key_token: PBytes);
                /// CSNBKGN2 (Key Generate2): AES CIPHER and HMAC keys.
                Csnbkgn2 CSNBKGN2(rule_array_count: PLong, rule_array: PBytes,
                    clear_key_bit_length: PLong, key_type_1: PBytes, key_type_2: PBytes,
                    key_name_1_length: PLong, key_name_1: PBytes, key_name_2_length: PLong,
                    key_name_2: PBytes, user_associated_data_1_length: PLong,
                    user_associated_data_1: PBytes, user_associated_data_2_length: PLong,
                    user_associated_data_2: PBytes, KEK_key_identifier_1_length: PLong,
                    KEK_key_identifier_1: PBytes, KEK_key_identifier_2_length: PLong,
                    KEK_key_identifier_2: PBytes, generated_key_identifier_1_length: PLong,
                    generated_key_identifier_1: PBytes, generated_key_identifier_2_length: PLong,
                    generated_key_identifier_2: PBytes);
            }
            emulator {
                /// CSUAACM (Access Control Maintenance): roles.
                Csuaacm CSUAACM(rule_array_count: PLong, rule_array: PBytes, name: PBytes,
                    output_data_length: PLong, output_data: PBytes);
                /// CSUACRA (Cryptographic Resource Allocate).
                Csuacra CSUACRA(rule_array_count: PLong, rule_array: PBytes,
                    resource_name_length: PLong, resource_name: PBytes);
                /// CSUACRD (Cryptographic Resource Deallocate).
                Csuacrd CSUACRD(rule_array_count: PLong, rule_array: PBytes,
                    resource_name_length: PLong, resource_name: PBytes);
                /// CSNBCKM (Multiple Clear Key Import).
                Csnbckm CSNBCKM(rule_array_count: PLong, rule_array: PBytes,
                    clear_key_length: PLong, clear_key: PBytes, target_key_identifier: PBytes);
                /// CSNBKPI2 (Key Part Import2).
                Csnbkpi2 CSNBKPI2(rule_array_count: PLong, rule_array: PBytes,
                    clear_key_part_length: PLong, clear_key_part: PBytes,
                    key_identifier_length: PLong, key_identifier: PBytes);
                /// CSNBRNG (Random Number Generate, 8 bytes).
                Csnbrng CSNBRNG(form: PBytes, random_number: PBytes);
                /// CSNBRNGL (Random Number Generate Long).
                Csnbrngl CSNBRNGL(rule_array_count: PLong, rule_array: PBytes,
                    reserved_length: PLong, reserved: PBytes, random_number_length: PLong,
                    random_number: PBytes);
                /// CSNDPKE (PKA Encrypt).
                Csndpke CSNDPKE(rule_array_count: PLong, rule_array: PBytes,
                    key_value_length: PLong, key_value: PBytes, data_struct_length: PLong,
                    data_struct: PBytes, RSA_public_key_length: PLong, RSA_public_key: PBytes,
                    RSA_encipher_length: PLong, RSA_encipher: PBytes);
                /// CSNDPKD (PKA Decrypt).
                Csndpkd CSNDPKD(rule_array_count: PLong, rule_array: PBytes,
                    enciphered_key_length: PLong, enciphered_key: PBytes, data_struct_length: PLong,
                    data_struct: PBytes, RSA_private_key_length: PLong, RSA_private_key: PBytes,
                    key_value_length: PLong, key_value: PBytes);
                /// CSNBHMG (HMAC Generate).
                Csnbhmg CSNBHMG(rule_array_count: PLong, rule_array: PBytes,
                    key_identifier_length: PLong, key_identifier: PBytes,
                    message_text_length: PLong, message_text: PBytes, chaining_vector_length: PLong,
                    chaining_vector: PBytes, MAC_length: PLong, MAC_text: PBytes);
                /// CSNBHMV (HMAC Verify).
                Csnbhmv CSNBHMV(rule_array_count: PLong, rule_array: PBytes,
                    key_identifier_length: PLong, key_identifier: PBytes,
                    message_text_length: PLong, message_text: PBytes, chaining_vector_length: PLong,
                    chaining_vector: PBytes, MAC_length: PLong, MAC_text: PBytes);
                /// CSNBOWH (One-Way Hash).
                Csnbowh CSNBOWH(rule_array_count: PLong, rule_array: PBytes, text_length: PLong,
                    text: PBytes, chaining_vector_length: PLong, chaining_vector: PBytes,
                    hash_length: PLong, hash: PBytes);
            }
            unimplemented [
                CSNBCKI, CSNBDKX, CSNBDKM, CSNBKEX, CSNBKIM, CSNBKPI, CSNBKSI, CSNBKRC, CSNBAKRC,
                CSNBKRD, CSNBKRL, CSNBKRR, CSNBKRW, CSNDKRC, CSNDKRD, CSNDKRL, CSNDKRR, CSNDKRW,
                CSNBKYT, CSNBKYTX, CSNBKTR, CSNBMGN, CSNBMVR, CSNDPKI, CSNDSYI, CSNDSYI2, CSNDSYX,
                CSUACFC, CSNDSBC, CSNDSBD, CSUALCT, CSUAACI, CSNDPKH, CSNDPKR, CSUAMKD, CSNDRKD,
                CSNDRKL, CSNDSYG, CSNBPTR, CSNBCPE, CSNBCPA, CSNBPGN, CSNBPVR, CSNBDKG, CSNBEPG,
                CSNBCVE, CSNBCSG, CSNBCSV, CSNBCVG, CSNBKTP, CSNBPEX, CSNBPEXX, CSUARNT, CSNBCVT,
                CSNBMDG, CSNBTRV, CSNBSKY, CSNBSPN, CSNBPCU, CSNDEDH, CSUAPRB, CSNDTBC, CSNDRKX,
                CSNBKET, CSNBCTT2, CSNBRKA, CSNBKTR2, CSUADHK, CSUADHQ, CSUAPCV,
            ]
        }
    };
}

/// The two shapes in which [`cca_verb_table!`](crate::cca_verb_table) hands
/// out the table.
#[doc(hidden)]
#[macro_export]
macro_rules! __cca_verb_view {
    ($then:ident [] $($table:tt)*) => {
        $then! { $($table)* }
    };
    ($then:ident [flat]
        pkcscca { $($pkcscca:tt)* }
        testkit { $($testkit:tt)* }
        emulator { $($emulator:tt)* }
        unimplemented [ $($u:tt)* ]
    ) => {
        $then! { unimplemented [ $($u)* ] $($pkcscca)* $($testkit)* $($emulator)* }
    };
}

/// The items of this module, from the table.
macro_rules! abi_items {
    (
        unimplemented [ $($u:ident),* $(,)? ]
        $( $(#[$doc:meta])* $variant:ident $name:ident ( $($p:ident : $t:ident),* ); )*
    ) => {
        /// One function-pointer type per verb with a signature, named after
        /// its C symbol: the common status prefix, then the table's parameters.
        #[allow(non_camel_case_types, reason = "named after the C symbols")]
        // Without `testkit` the program uses the types of its own verbs only; the
        // others are the software CCA's (its export shims are checked against them).
        #[cfg_attr(not(feature = "testkit"), allow(dead_code, clippy::upper_case_acronyms))]
        pub mod fns {
            use super::{PBytes, PLong, PVoid};
            $(
                $(#[$doc])*
                pub type $name = unsafe extern "C" fn(PLong, PLong, PLong, PBytes, $($t),*);
            )*
        }

        /// Every symbol openCryptoki's CCA token (3.8.1 and current), pkcscca
        /// and zkey resolve from `libcsulcca.so`: the verbs of the table with a
        /// signature, then the `unimplemented` ones (102 names).
        #[cfg(feature = "testkit")]
        pub const ALL_VERBS: [&str; 102] = [
            $( stringify!($name), )* $( stringify!($u), )*
        ];

        /// The C parameter types of each verb with a signature, prefix
        /// included, for tests that write C code against the same table.
        #[cfg(feature = "testkit")]
        pub const C_PARAMETERS: &[(&str, &[&str])] = &[$(
            (stringify!($name), &[
                "long *", "long *", "long *", "unsigned char *", $(c_type!($t)),*
            ]),
        )*];
    };
}

/// The C spelling of a parameter type of the table.
#[cfg(feature = "testkit")]
macro_rules! c_type {
    (PLong) => {
        "long *"
    };
    (PBytes) => {
        "unsigned char *"
    };
    (PVoid) => {
        "void *"
    };
}

cca_verb_table!(abi_items, flat);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verb_name_is_listed_once() {
        let mut names = ALL_VERBS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL_VERBS.len());
    }
}
