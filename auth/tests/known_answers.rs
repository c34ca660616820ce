//! Known answers computed independently by `tests/vectors/make_vectors.py` (Python's hashlib,
//! hmac, zlib, base64 and big integers; see tests/vectors/README.md), and keys published by
//! others that `nvme gen-dhchap-key` / `nvme gen-tls-key` printed.

use serde_json::Value;
use vfnvme_auth::{
    augmented_challenge, DhGroupId, DhKeyPair, DhchapSecret, HashId, IdentityVersion, PskHash,
    TlsPsk, Transaction,
};

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/vectors.json")).expect("vectors.json is JSON")
}

fn hex(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("a hex string");
    let s = if s.len() % 2 == 1 {
        format!("0{s}")
    } else {
        s.to_owned()
    };
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn text(v: &Value) -> &str {
    v.as_str().expect("a string")
}

fn hash(v: &Value) -> HashId {
    HashId::from_id(v.as_u64().expect("a hash id") as u8).expect("a known hash id")
}

#[test]
fn dhchap_secrets_transformed_keys_and_responses_match_the_independent_computation() {
    let all = vectors();
    let (host_nqn, subsystem_nqn) = (text(&all["host_nqn"]), text(&all["subsystem_nqn"]));
    let cases = all["dhchap"].as_array().unwrap();
    assert_eq!(cases.len(), 12);
    for case in cases {
        let secret = DhchapSecret::parse(text(&case["secret"])).unwrap();
        assert_eq!(secret.representation().as_str(), text(&case["secret"]));
        assert_eq!(secret.key_len(), hex(&case["key"]).len());
        let host_key = secret.transformed(host_nqn);
        let ctrl_key = secret.transformed(subsystem_nqn);
        assert_eq!(host_key.as_bytes(), hex(&case["transformed_host_key"]));
        assert_eq!(ctrl_key.as_bytes(), hex(&case["transformed_ctrl_key"]));
        let transaction = Transaction {
            hash: hash(&case["hash"]),
            t_id: case["tid"].as_u64().unwrap() as u16,
            sc_c: 0,
            host_nqn,
            subsystem_nqn,
            session_key: None,
        };
        let r1 = transaction.host_response(
            &host_key,
            &hex(&case["c1"]),
            case["seq1"].as_u64().unwrap() as u32,
        );
        assert_eq!(r1.as_bytes(), hex(&case["host_response"]));
        assert!(r1.matches(&hex(&case["host_response"])));
        let r2 = transaction.controller_response(
            &ctrl_key,
            &hex(&case["c2"]),
            case["seq2"].as_u64().unwrap() as u32,
        );
        assert_eq!(r2.as_bytes(), hex(&case["ctrl_response"]));
    }
}

#[test]
fn ffdhe_key_exchange_and_augmented_responses_match_the_independent_computation() {
    let all = vectors();
    let (host_nqn, subsystem_nqn) = (text(&all["host_nqn"]), text(&all["subsystem_nqn"]));
    let cases = all["dh"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let group = DhGroupId::from_id(case["group"].as_u64().unwrap() as u8).unwrap();
        let host = DhKeyPair::from_exponent(group, &hex(&case["host_private"])).unwrap();
        let ctrl = DhKeyPair::from_exponent(group, &hex(&case["ctrl_private"])).unwrap();
        assert_eq!(host.public_value(), hex(&case["host_public"]), "{group}");
        assert_eq!(ctrl.public_value(), hex(&case["ctrl_public"]), "{group}");
        let shared = host.shared_secret(ctrl.public_value()).unwrap();
        assert_eq!(shared.as_slice(), hex(&case["shared"]), "{group}");
        assert_eq!(
            ctrl.shared_secret(host.public_value()).unwrap().as_slice(),
            shared.as_slice()
        );
        let hash = hash(&case["hash"]);
        let c1 = hex(&case["c1"]);
        assert_eq!(
            augmented_challenge(hash, &c1, &shared).as_bytes(),
            hex(&case["augmented_c1"])
        );
        let key = DhchapSecret::new(&hex(&case["key"]), None).unwrap();
        let transaction = Transaction {
            hash,
            t_id: 3,
            sc_c: 0,
            host_nqn,
            subsystem_nqn,
            session_key: Some(&shared),
        };
        let r1 = transaction.host_response(&key.transformed(host_nqn), &c1, 7);
        assert_eq!(r1.as_bytes(), hex(&case["host_response"]), "{group}");
        let r2 =
            transaction.controller_response(&key.transformed(subsystem_nqn), &hex(&case["c2"]), 8);
        assert_eq!(r2.as_bytes(), hex(&case["ctrl_response"]), "{group}");
    }
}

#[test]
fn tls_psk_interchange_retained_psk_identities_and_tls_psks_match() {
    let all = vectors();
    let (host_nqn, subsystem_nqn) = (text(&all["host_nqn"]), text(&all["subsystem_nqn"]));
    for case in all["tls"].as_array().unwrap() {
        let psk = TlsPsk::parse(text(&case["interchange"])).unwrap();
        assert_eq!(psk.representation().as_str(), text(&case["interchange"]));
        assert_eq!(psk.cipher_hash() as u64, case["cipher"].as_u64().unwrap());
        assert_eq!(psk.retained(host_nqn).as_bytes(), hex(&case["retained"]));
        let v0 = psk.credentials(host_nqn, subsystem_nqn, IdentityVersion::V0);
        assert_eq!(v0.identity, text(&case["identity_v0"]));
        assert_eq!(v0.psk.as_bytes(), hex(&case["tls_psk_v0"]));
        let v1 = psk.credentials(host_nqn, subsystem_nqn, IdentityVersion::V1);
        assert_eq!(v1.identity, text(&case["identity_v1"]));
        assert!(v1.identity.ends_with(text(&case["digest"])));
        assert_eq!(v1.psk.as_bytes(), hex(&case["tls_psk_v1"]));
    }
}

/// Keys `nvme gen-dhchap-key` printed, from ceph-nvmeof's tests (tests/test_dhchap.py), and
/// keys `nvme gen-tls-key` printed, from Oracle's "NVMe over TCP with TLS" loopback example:
/// their CRC-32 and base64 are checked as nvme-cli wrote them, and print back identically.
#[test]
fn keys_printed_by_nvme_cli_parse_and_print_back() {
    let dhchap = [
        ("DHHC-1:01:x7ecfGgIdOEl+J5cJ9JcZHOS2By2Me6eDJUnrsT9MVrCWRYV:", 32, Some(HashId::Sha256)),
        ("DHHC-1:01:eNNXGjidEHHStbUi2Gmpps0JcnofReFfy+NaulguGgt327hz:", 32, Some(HashId::Sha256)),
        (
            "DHHC-1:02:ULMaRuJ40ui58nK4Qk5b0J89G3unbGb8mBUbt/XSrf18PBPvyL3sivZOINNh2o/fPpXbGg==:",
            48,
            Some(HashId::Sha384),
        ),
        (
            "DHHC-1:03:6EKZcEL86u4vzTE8sCETvskE3pLKE+qOorl9QxrRfLvfOEQ5GvqCzM41U8fFVAz1cs+T14PjSpd1J641rfeCC1x2VNg=:",
            64,
            Some(HashId::Sha512),
        ),
    ];
    for (text, len, transform) in dhchap {
        let secret = DhchapSecret::parse(text).unwrap();
        assert_eq!((secret.key_len(), secret.transform()), (len, transform));
        assert_eq!(secret.representation().as_str(), text);
    }
    for text in [
        "NVMeTLSkey-1:01:LFKHx3GLh/WxQ3Qix/hiXhgJO/Ixkvwbye6I1Ys3uH5JBiAx:",
        "NVMeTLSkey-1:01:ajd8YaWR461D0eOU53vfKuI+sPtTZ8Fi1GLeXh7f/ZgMPniF:",
        "NVMeTLSkey-1:01:YzrPElk4OYy1uUERriPwiiyEJE/+J5ckYpLB+5NHMsR2iBuT:",
    ] {
        let psk = TlsPsk::parse(text).unwrap();
        assert_eq!(psk.representation().as_str(), text);
        // The identity nvme-cli inserted for the first of them (`keyctl show` in the example).
        let nqn = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000000";
        let v0 = psk.credentials(nqn, "nqn.test", IdentityVersion::V0);
        assert_eq!(v0.identity, format!("NVMe0R01 {nqn} nqn.test"));
    }
}

/// libnvme's own vectors (`test/psk.c`: `test_data_psk`, `test_data_identity`): the
/// interchange format of a configured PSK, and the version 1 identities (whose digest is
/// computed over the retained PSK) for SHA-256 and SHA-384.
#[test]
fn libnvme_psk_and_identity_vectors() {
    let psk32: [u8; 32] = [
        0x55, 0x12, 0xDB, 0xB6, 0x73, 0x7D, 0x01, 0x06, 0xF6, 0x59, 0x75, 0xB7, 0x73, 0xDF, 0xB0,
        0x11, 0xFF, 0xC3, 0x44, 0xBC, 0xF4, 0x42, 0xE2, 0xDD, 0x6D, 0x8B, 0xC4, 0x87, 0x0B, 0x5D,
        0x5B, 0x03,
    ];
    let mut psk48 = psk32.to_vec();
    psk48.extend_from_slice(&psk32[16..]);
    let cases = [
        (&psk32[..], None, "NVMeTLSkey-1:00:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:"),
        (
            &psk32[..],
            Some(PskHash::Sha256),
            "NVMeTLSkey-1:01:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwNf9LrZ:",
        ),
        (
            &psk48[..],
            Some(PskHash::Sha384),
            "NVMeTLSkey-1:02:VRLbtnN9AQb2WXW3c9+wEf/DRLz0QuLdbYvEhwtdWwP/w0S89ELi3W2LxIcLXVsDn8kXZQ==:",
        ),
    ];
    for (key, transform, exported) in cases {
        let psk = TlsPsk::new(key, transform).unwrap();
        assert_eq!(psk.representation().as_str(), exported);
        assert_eq!(
            TlsPsk::parse(exported).unwrap().representation().as_str(),
            exported
        );
    }
    let identities = [
        (
            TlsPsk::new(&psk32, Some(PskHash::Sha256)).unwrap(),
            "NVMe1R01 nqn.psk-test-host nqn.psk-test-subsys iSbjiStwJ/1TrTvDlt2fjFmzvsytOJelidNnA+X5lEU=",
        ),
        (
            TlsPsk::new(&psk48, Some(PskHash::Sha384)).unwrap(),
            "NVMe1R02 nqn.psk-test-host nqn.psk-test-subsys QhW2+Rp6RzHlNtCslyRxMnwJ11tKKhz8JCAQpQ+XUD8f9td1VeH5h53yz2wKJG1a",
        ),
    ];
    for (psk, identity) in identities {
        let credentials = psk.credentials(
            "nqn.psk-test-host",
            "nqn.psk-test-subsys",
            IdentityVersion::V1,
        );
        assert_eq!(credentials.identity, identity);
    }
}
