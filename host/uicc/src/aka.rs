//! 3GPP AKA (TS 33.102 §6.3) on Milenage: the USIM's side, which the software SIM runs, and
//! the network's side (the HSS/AuC that SORACOM's Keys API fronts), for a mock Keys API.
//!
//! AUTN = (SQN xor AK) ‖ AMF ‖ MAC-A, 16 bytes, where AK = f5(RAND) and MAC-A =
//! f1(SQN, RAND, AMF). The USIM recovers SQN, checks MAC-A, then checks that SQN is fresh;
//! when it is not, it answers AUTS = (SQN_MS xor AK*) ‖ MAC-S, where SQN_MS is the highest SQN
//! it accepted, AK* = f5*(RAND) and MAC-S = f1*(SQN_MS, RAND, AMF = `00 00`) (§6.3.3, §6.3.5).
//!
//! Freshness here is the simplest rule TS 33.102 Annex C allows in spirit: an SQN is fresh when
//! it is greater than the highest one accepted so far (no IND array, no age limit), and no
//! further above it than [`SQN_DELTA`] (Annex C.2.1: "the received sequence number SQN shall
//! only be accepted by the USIM if SEQ − SEQ_MS ≤ Δ"; otherwise a synchronisation failure with
//! SQN_MS), so that one forged or runaway challenge cannot push SQN to its end. SQN is a 48-bit
//! number, held in a `u64`.

use crate::milenage::Subscriber;
use crate::{AuthOutcome, Secret, apdu::AUTS_LEN};

/// The largest SQN: 48 bits.
pub const SQN_MAX: u64 = (1 << 48) - 1;

/// Δ, the largest step one accepted challenge may move SQN forward: 2^28, the value of Δ in
/// the example parameters of TS 33.102 Annex C.3. A challenge whose SQN is more than Δ above
/// SQN_MS gets a synchronisation failure (Annex C.2.1), so SQN_MS cannot be pushed to its
/// 48-bit end by a few challenges.
pub const SQN_DELTA: u64 = 1 << 28;

/// AMF used in MAC-S: all zeros (TS 33.102 §6.3.3).
pub const RESYNC_AMF: [u8; 2] = [0, 0];

/// SQN as its 6 big-endian bytes. Bits above 48 are dropped.
pub fn sqn_to_bytes(sqn: u64) -> [u8; 6] {
    let b = (sqn & SQN_MAX).to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// SQN from its 6 big-endian bytes.
pub fn sqn_from_bytes(bytes: &[u8; 6]) -> u64 {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

fn xor6(a: &[u8], b: &[u8; 6]) -> [u8; 6] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// Compare two MACs without an early exit.
fn mac_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One authentication vector, as the network makes it for a challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthVector {
    /// RAND, 16 bytes: sent to the device.
    pub rand: [u8; 16],
    /// AUTN, 16 bytes: sent to the device.
    pub autn: [u8; 16],
    /// XRES, 8 bytes: the RES the device must send back.
    pub xres: Secret,
    /// CK, 16 bytes: the key the device will sign with.
    pub ck: Secret,
    /// IK, 16 bytes.
    pub ik: Secret,
}

/// The network's side: the authentication vector for `sqn` (48 bits), `amf` and `rand` (the
/// caller draws RAND at random, 128 bits, TS 33.102 §6.3.2).
pub fn generate_vector(sub: &Subscriber, sqn: u64, amf: [u8; 2], rand: [u8; 16]) -> AuthVector {
    let sqn = sqn_to_bytes(sqn);
    let mac_a = sub.f1(&rand, &sqn, &amf);
    let out = sub.f2345(&rand);
    let mut autn = [0u8; 16];
    autn[..6].copy_from_slice(&xor6(&sqn, &out.ak));
    autn[6..8].copy_from_slice(&amf);
    autn[8..].copy_from_slice(&mac_a);
    AuthVector {
        rand,
        autn,
        xres: out.res,
        ck: out.ck,
        ik: out.ik,
    }
}

/// AUTS did not come from this subscriber's SIM for this RAND: MAC-S does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AUTS rejected: its MAC-S does not match")]
pub struct AutsMismatch;

/// The network's side of resynchronisation (TS 33.102 §6.3.5): recover SQN_MS, the highest SQN
/// the SIM accepted, from the AUTS it answered to the challenge with `rand`. The network then
/// issues its next vector with an SQN above it. Errors: [`AutsMismatch`] when MAC-S is wrong.
pub fn recover_sqn_ms(
    sub: &Subscriber,
    rand: &[u8; 16],
    auts: &[u8; AUTS_LEN],
) -> Result<u64, AutsMismatch> {
    let sqn_ms = xor6(&auts[..6], &sub.f5_star(rand));
    let mac_s = sub.f1_star(rand, &sqn_ms, &RESYNC_AMF);
    if mac_eq(&mac_s, &auts[6..]) {
        Ok(sqn_from_bytes(&sqn_ms))
    } else {
        Err(AutsMismatch)
    }
}

/// What the USIM does with a challenge (TS 33.102 §6.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsimVerdict {
    /// MAC-A matched and SQN is fresh: remember `sqn` as the highest accepted (before
    /// answering), then answer `outcome` ([`AuthOutcome::Res`]).
    Accept {
        /// The SQN the network sent, now the highest accepted.
        sqn: u64,
        /// RES, CK and IK.
        outcome: AuthOutcome,
    },
    /// MAC-A matched but SQN is not fresh (not above SQN_MS, or more than [`SQN_DELTA`] above
    /// it): answer `outcome` ([`AuthOutcome::SyncFailure`]);
    /// the stored SQN does not change.
    Resync {
        /// The AUTS for the network.
        outcome: AuthOutcome,
    },
    /// MAC-A did not match: the challenge did not come from a network that knows K.
    MacFailure,
}

/// The USIM's side: check `rand` and `autn` against the subscriber's keys and `sqn_ms`, the
/// highest SQN accepted so far.
pub fn usim_authenticate(
    sub: &Subscriber,
    sqn_ms: u64,
    rand: &[u8; 16],
    autn: &[u8; 16],
) -> UsimVerdict {
    let out = sub.f2345(rand);
    let sqn = xor6(&autn[..6], &out.ak);
    let amf = [autn[6], autn[7]];
    let xmac_a = sub.f1(rand, &sqn, &amf);
    if !mac_eq(&xmac_a, &autn[8..]) {
        return UsimVerdict::MacFailure;
    }
    let sqn = sqn_from_bytes(&sqn);
    // Fresh: above SQN_MS (Annex C.2.2) and at most Δ above it (Annex C.2.1).
    if sqn <= sqn_ms || sqn - sqn_ms > SQN_DELTA {
        let sqn_ms_bytes = sqn_to_bytes(sqn_ms);
        let mut auts = [0u8; AUTS_LEN];
        auts[..6].copy_from_slice(&xor6(&sqn_ms_bytes, &sub.f5_star(rand)));
        auts[6..].copy_from_slice(&sub.f1_star(rand, &sqn_ms_bytes, &RESYNC_AMF));
        return UsimVerdict::Resync {
            outcome: AuthOutcome::SyncFailure { auts },
        };
    }
    UsimVerdict::Accept {
        sqn,
        outcome: AuthOutcome::Res {
            res: out.res,
            ck: out.ck,
            ik: out.ik,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key128;

    fn subscriber() -> Subscriber {
        // TS 35.208 test set 1.
        let k: [u8; 16] = hex::decode("465b5ce8b199b49faa5f0a2ee238a6bc")
            .unwrap()
            .try_into()
            .unwrap();
        let opc: [u8; 16] = hex::decode("cd63cb71954a9f4e48a5994e37a02baf")
            .unwrap()
            .try_into()
            .unwrap();
        Subscriber::new(Key128::new(k), Key128::new(opc))
    }

    #[test]
    fn sqn_bytes_round_trip() {
        assert_eq!(
            sqn_to_bytes(0xff9bb4d0b607),
            [0xff, 0x9b, 0xb4, 0xd0, 0xb6, 0x07]
        );
        assert_eq!(
            sqn_from_bytes(&[0xff, 0x9b, 0xb4, 0xd0, 0xb6, 0x07]),
            0xff9bb4d0b607
        );
        assert_eq!(sqn_from_bytes(&sqn_to_bytes(SQN_MAX)), SQN_MAX);
    }

    #[test]
    fn autn_of_test_set_1() {
        // AUTN = (SQN xor AK) || AMF || MAC-A with the TS 35.208 test set 1 values.
        let rand: [u8; 16] = hex::decode("23553cbe9637a89d218ae64dae47bf35")
            .unwrap()
            .try_into()
            .unwrap();
        let v = generate_vector(&subscriber(), 0xff9bb4d0b607, [0xb9, 0xb9], rand);
        let sqn_xor_ak: Vec<u8> = [0xff, 0x9b, 0xb4, 0xd0, 0xb6, 0x07]
            .iter()
            .zip([0xaa, 0x68, 0x9c, 0x64, 0x83, 0x70])
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(&v.autn[..6], &sqn_xor_ak[..]);
        assert_eq!(hex::encode(&v.autn[6..]), "b9b94a9ffac354dfafb3");
        assert_eq!(hex::encode(v.xres.expose()), "a54211d5e3ba50bf");
    }

    #[test]
    fn round_trip_accept_then_resync() {
        let sub = subscriber();
        let network_sqn = 0x20;
        // The network makes a challenge; the SIM (last SQN 0x1f) accepts it and RES = XRES.
        let v = generate_vector(&sub, network_sqn, [0x80, 0x00], [7; 16]);
        let UsimVerdict::Accept { sqn, outcome } = usim_authenticate(&sub, 0x1f, &v.rand, &v.autn)
        else {
            panic!("fresh SQN refused");
        };
        assert_eq!(sqn, network_sqn);
        let AuthOutcome::Res { res, ck, ik } = outcome else {
            panic!()
        };
        assert_eq!(res, v.xres);
        assert_eq!(ck, v.ck);
        assert_eq!(ik, v.ik);

        // The same challenge again is stale: the SIM answers AUTS, from which the network
        // recovers the SIM's SQN and issues a challenge the SIM accepts.
        let verdict = usim_authenticate(&sub, sqn, &v.rand, &v.autn);
        let UsimVerdict::Resync {
            outcome: AuthOutcome::SyncFailure { auts },
        } = verdict
        else {
            panic!("stale SQN accepted: {verdict:?}");
        };
        assert_eq!(recover_sqn_ms(&sub, &v.rand, &auts), Ok(network_sqn));
        let next = generate_vector(&sub, network_sqn + 1, [0x80, 0x00], [8; 16]);
        assert!(matches!(
            usim_authenticate(&sub, sqn, &next.rand, &next.autn),
            UsimVerdict::Accept { sqn: 0x21, .. }
        ));

        // A tampered AUTS, or AUTS checked against another RAND, is rejected.
        let mut bad = auts;
        bad[13] ^= 1;
        assert_eq!(recover_sqn_ms(&sub, &v.rand, &bad), Err(AutsMismatch));
        assert_eq!(recover_sqn_ms(&sub, &[9; 16], &auts), Err(AutsMismatch));
    }

    #[test]
    fn wrong_key_or_tampered_autn_is_a_mac_failure() {
        let sub = subscriber();
        let v = generate_vector(&sub, 5, [0, 0], [1; 16]);
        let other = Subscriber::new(Key128::new([3; 16]), sub.opc().clone());
        assert_eq!(
            usim_authenticate(&other, 0, &v.rand, &v.autn),
            UsimVerdict::MacFailure
        );
        for i in [0, 6, 8, 15] {
            let mut autn = v.autn;
            autn[i] ^= 0x01;
            assert_eq!(
                usim_authenticate(&sub, 0, &v.rand, &autn),
                UsimVerdict::MacFailure,
                "byte {i}"
            );
        }
    }

    #[test]
    fn a_jump_beyond_delta_is_a_sync_failure() {
        // TS 33.102 Annex C.2.1: SEQ - SEQ_MS <= delta, else a synchronisation failure with
        // SQN_MS; delta = 2^28 here.
        let sub = subscriber();
        let sqn_ms = 0x1000;
        let at_delta = generate_vector(&sub, sqn_ms + (1 << 28), [0x80, 0x00], [2; 16]);
        assert!(matches!(
            usim_authenticate(&sub, sqn_ms, &at_delta.rand, &at_delta.autn),
            UsimVerdict::Accept { sqn, .. } if sqn == sqn_ms + (1 << 28)
        ));
        let beyond = generate_vector(&sub, sqn_ms + (1 << 28) + 1, [0x80, 0x00], [3; 16]);
        let verdict = usim_authenticate(&sub, sqn_ms, &beyond.rand, &beyond.autn);
        let UsimVerdict::Resync {
            outcome: AuthOutcome::SyncFailure { auts },
        } = verdict
        else {
            panic!("a jump of 2^28 + 1 accepted: {verdict:?}");
        };
        assert_eq!(recover_sqn_ms(&sub, &beyond.rand, &auts), Ok(sqn_ms));
        // The largest SQN, from a SIM that never accepted one: far beyond delta.
        let top = generate_vector(&sub, SQN_MAX, [0x80, 0x00], [4; 16]);
        assert!(matches!(
            usim_authenticate(&sub, 0, &top.rand, &top.autn),
            UsimVerdict::Resync { .. }
        ));
    }
}
