//! Milenage, the 3GPP example algorithm set for AKA (TS 35.205 general, TS 35.206 algorithm
//! specification), for one subscriber: its key K and its operator variant OPc.
//!
//! The computation is the `milenage` crate's (AES-128 from RustCrypto's `aes`); this module
//! wraps it so that K, OPc, RES, CK and IK stay in zeroizing, redacted types, and checks it
//! against the conformance data of TS 35.208 (test sets 1 and 2). The `milenage` crate keeps
//! its own copy of K and OPc in each instance it makes and does not zeroize it: an instance
//! lives for one function call here.

use crate::{Key128, Secret};
use zeroize::Zeroize as _;

/// A subscriber's Milenage keys. `Debug` shows neither key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    k: Key128,
    opc: Key128,
}

/// RES, CK and IK (f2, f3, f4) and AK (f5) for one RAND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// RES (XRES on the network's side), 8 bytes: f2.
    pub res: Secret,
    /// CK, 16 bytes: f3.
    pub ck: Secret,
    /// IK, 16 bytes: f4.
    pub ik: Secret,
    /// AK, the anonymity key that conceals SQN in AUTN, 6 bytes: f5.
    pub ak: [u8; 6],
}

impl Subscriber {
    /// A subscriber from K and OPc (the form SIM vendors and TS 35.208 give).
    pub fn new(k: Key128, opc: Key128) -> Self {
        Subscriber { k, opc }
    }

    /// A subscriber from K and the operator's OP: OPc = E_K(OP) xor OP (TS 35.206 §4.1).
    pub fn from_op(k: Key128, op: &[u8; 16]) -> Self {
        let mut m = milenage::Milenage::new_with_op(*k.expose(), *op);
        let opc = Key128::new(*m.opc());
        drop_engine(&mut m);
        Subscriber { k, opc }
    }

    /// OPc.
    pub fn opc(&self) -> &Key128 {
        &self.opc
    }

    fn engine(&self) -> milenage::Milenage {
        milenage::Milenage::new_with_opc(*self.k.expose(), *self.opc.expose())
    }

    /// f1: the network authentication code MAC-A over SQN (6 bytes), RAND and AMF (2 bytes).
    pub fn f1(&self, rand: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> [u8; 8] {
        let mut m = self.engine();
        let mac = m.f1(rand, sqn, amf);
        drop_engine(&mut m);
        mac
    }

    /// f1*: the resynchronisation authentication code MAC-S over SQN_MS, RAND and AMF (the
    /// dummy all-zero AMF in AUTS, TS 33.102 §6.3.3).
    pub fn f1_star(&self, rand: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> [u8; 8] {
        let mut m = self.engine();
        let mac = m.f1star(rand, sqn, amf);
        drop_engine(&mut m);
        mac
    }

    /// f2, f3, f4 and f5 for `rand`: RES, CK, IK and AK.
    pub fn f2345(&self, rand: &[u8; 16]) -> Outputs {
        let mut m = self.engine();
        let (mut res, mut ck, mut ik, ak) = m.f2345(rand);
        drop_engine(&mut m);
        let out = Outputs {
            res: Secret::from_slice(&res),
            ck: Secret::from_slice(&ck),
            ik: Secret::from_slice(&ik),
            ak,
        };
        res.zeroize();
        ck.zeroize();
        ik.zeroize();
        out
    }

    /// f5*: the anonymity key AK* that conceals SQN_MS in AUTS.
    pub fn f5_star(&self, rand: &[u8; 16]) -> [u8; 6] {
        let mut m = self.engine();
        let ak = m.f5star(rand);
        drop_engine(&mut m);
        ak
    }
}

/// Overwrite a Milenage instance (which holds K, OPc and the last outputs) before it goes.
fn drop_engine(m: &mut milenage::Milenage) {
    *m = milenage::Milenage::default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    struct TestSet {
        k: &'static str,
        rand: &'static str,
        sqn: &'static str,
        amf: &'static str,
        op: &'static str,
        opc: &'static str,
        f1: &'static str,
        f1_star: &'static str,
        f2: &'static str,
        f5: &'static str,
        f3: &'static str,
        f4: &'static str,
        f5_star: &'static str,
    }

    /// 3GPP TS 35.208 §4.3, test sets 1 and 2.
    const TEST_SETS: [TestSet; 2] = [
        TestSet {
            k: "465b5ce8b199b49faa5f0a2ee238a6bc",
            rand: "23553cbe9637a89d218ae64dae47bf35",
            sqn: "ff9bb4d0b607",
            amf: "b9b9",
            op: "cdc202d5123e20f62b6d676ac72cb318",
            opc: "cd63cb71954a9f4e48a5994e37a02baf",
            f1: "4a9ffac354dfafb3",
            f1_star: "01cfaf9ec4e871e9",
            f2: "a54211d5e3ba50bf",
            f5: "aa689c648370",
            f3: "b40ba9a3c58b2a05bbf0d987b21bf8cb",
            f4: "f769bcd751044604127672711c6d3441",
            f5_star: "451e8beca43b",
        },
        TestSet {
            k: "0396eb317b6d1c36f19c1c84cd6ffd16",
            rand: "c00d603103dcee52c4478119494202e8",
            sqn: "fd8eef40df7d",
            amf: "af17",
            op: "ff53bade17df5d4e793073ce9d7579fa",
            opc: "53c15671c60a4b731c55b4a441c0bde2",
            f1: "5df5b31807e258b0",
            f1_star: "a8c016e51ef4a343",
            f2: "d3a628ed988620f0",
            f5: "c47783995f72",
            f3: "58c433ff7a7082acd424220f2b67c556",
            f4: "21a8c1f929702adb3e738488b9f5c5da",
            f5_star: "30f1197061c1",
        },
    ];

    #[test]
    fn ts_35_208_test_sets() {
        for (i, t) in TEST_SETS.iter().enumerate() {
            let k = Key128::new(h(t.k));
            let from_op = Subscriber::from_op(k.clone(), &h(t.op));
            assert_eq!(
                from_op.opc().expose(),
                &h::<16>(t.opc),
                "OPc, test set {}",
                i + 1
            );
            let sub = Subscriber::new(k, Key128::new(h(t.opc)));
            assert_eq!(sub, from_op);
            let (rand, sqn, amf) = (h(t.rand), h(t.sqn), h(t.amf));
            assert_eq!(
                sub.f1(&rand, &sqn, &amf),
                h::<8>(t.f1),
                "f1, test set {}",
                i + 1
            );
            assert_eq!(
                sub.f1_star(&rand, &sqn, &amf),
                h::<8>(t.f1_star),
                "f1*, test set {}",
                i + 1
            );
            let out = sub.f2345(&rand);
            assert_eq!(out.res.expose(), h::<8>(t.f2), "f2, test set {}", i + 1);
            assert_eq!(out.ck.expose(), h::<16>(t.f3), "f3, test set {}", i + 1);
            assert_eq!(out.ik.expose(), h::<16>(t.f4), "f4, test set {}", i + 1);
            assert_eq!(out.ak, h::<6>(t.f5), "f5, test set {}", i + 1);
            assert_eq!(
                sub.f5_star(&rand),
                h::<6>(t.f5_star),
                "f5*, test set {}",
                i + 1
            );
            let shown = format!("{sub:?} {out:?}");
            for secret in [h::<16>(t.k), h::<16>(t.opc), h::<16>(t.f3)] {
                let needle = format!("{}, {}, {}", secret[0], secret[1], secret[2]);
                assert!(!shown.contains(&needle), "{shown}");
            }
            assert!(shown.contains("<redacted 16 bytes>"));
        }
    }
}
