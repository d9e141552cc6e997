//! The decision of what to write next, as a pure function of what the Secret and the webhook
//! configurations hold now. The caller applies the step, re-reads and asks again until
//! [`Step::Done`].

/// A CA certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ca {
    /// The certificate, one PEM block.
    pub pem: String,
    /// The certificate, DER: its identity.
    pub der: Vec<u8>,
    /// End of validity, unix seconds.
    pub not_after: i64,
}

/// The serving certificate stored in the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// End of validity, unix seconds.
    pub not_after: i64,
    /// A client trusting only the Secret's signing CA accepts it, now, for every wanted name.
    pub trusted: bool,
}

/// A Secret whose CA can sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The CA whose key the Secret holds (not expired).
    pub signer: Ca,
    /// `ca.crt`: every CA to trust.
    pub bundle: Vec<Ca>,
    /// The serving pair, if its key matches its certificate.
    pub leaf: Option<Leaf>,
}

/// What the Secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretState {
    /// No Secret.
    Absent,
    /// A Secret whose CA cannot sign (missing, corrupt, expired, key mismatch).
    Unusable {
        /// Why, for the log.
        reason: String,
        /// The CAs still readable in its `ca.crt`.
        readable: Vec<Ca>,
    },
    /// A Secret whose CA can sign.
    Usable(Stored),
}

/// Validities and renewal margins, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// CA validity.
    pub ca_validity: i64,
    /// Renew the CA when less than this is left.
    pub ca_renew_before: i64,
    /// Serving certificate validity.
    pub leaf_validity: i64,
    /// Renew the serving certificate when less than this is left.
    pub leaf_renew_before: i64,
}

/// The next write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No usable CA: make a new CA and serving certificate, write the bundle (the new CA and
    /// `keep`) into the webhook configurations, then the Secret.
    Regenerate {
        /// The CAs trusted today that stay trusted.
        keep: Vec<Ca>,
        /// Why, for the log.
        reason: String,
    },
    /// The CA is near its end: put a new CA in the Secret, trusted along with `keep`; the
    /// serving certificate stays until the webhooks trust the new CA.
    RotateCa {
        /// The CAs that stay trusted (the current one among them).
        keep: Vec<Ca>,
    },
    /// Rewrite the Secret's `ca.crt` to exactly this (an expired CA dropped).
    SecretBundle(Vec<Ca>),
    /// Write this bundle into every webhook whose `caBundle` differs.
    WebhookBundle(Vec<Ca>),
    /// Issue a new serving certificate from the Secret's CA.
    IssueLeaf {
        /// Why, for the log.
        reason: &'static str,
    },
    /// Nothing to do before `next_check` (unix seconds).
    Done {
        /// When a certificate or CA next needs attention.
        next_check: i64,
    },
}

/// What to do next, given the Secret and the `caBundle` of every webhook of the configurations
/// that exist (one list of CAs per webhook).
pub fn plan(now: i64, secret: &SecretState, webhooks: &[Vec<Ca>], policy: &Policy) -> Step {
    let stored = match secret {
        SecretState::Usable(stored) => stored,
        SecretState::Absent => return regenerate(now, &[], webhooks, "no Secret".into()),
        SecretState::Unusable { reason, readable } => {
            return regenerate(now, readable, webhooks, reason.clone());
        }
    };
    if now >= stored.signer.not_after - policy.ca_renew_before {
        return Step::RotateCa {
            keep: trust(&stored.signer, &stored.bundle, now),
        };
    }
    let bundle = trust(&stored.signer, &stored.bundle, now);
    if !same_set(&bundle, &stored.bundle) {
        return Step::SecretBundle(bundle);
    }
    if webhooks.iter().any(|w| !same_set(w, &bundle)) {
        return Step::WebhookBundle(bundle);
    }
    if let Some(reason) = leaf_problem(now, stored.leaf.as_ref(), policy) {
        return Step::IssueLeaf { reason };
    }
    Step::Done {
        next_check: next_check(now, stored, policy),
    }
}

fn regenerate(now: i64, readable: &[Ca], webhooks: &[Vec<Ca>], reason: String) -> Step {
    let mut keep: Vec<Ca> = Vec::new();
    for ca in readable.iter().chain(webhooks.iter().flatten()) {
        if ca.not_after > now && !keep.iter().any(|k| k.der == ca.der) {
            keep.push(ca.clone());
        }
    }
    sort(&mut keep);
    Step::Regenerate { keep, reason }
}

/// The signer first, then the other unexpired CAs, newest first, without duplicates.
fn trust(signer: &Ca, bundle: &[Ca], now: i64) -> Vec<Ca> {
    let mut others: Vec<Ca> = Vec::new();
    for ca in bundle {
        if ca.not_after > now && ca.der != signer.der && !others.iter().any(|o| o.der == ca.der) {
            others.push(ca.clone());
        }
    }
    sort(&mut others);
    std::iter::once(signer.clone()).chain(others).collect()
}

fn sort(cas: &mut [Ca]) {
    cas.sort_by(|a, b| b.not_after.cmp(&a.not_after).then(a.der.cmp(&b.der)));
}

/// Same certificates, in any order.
pub fn same_set(a: &[Ca], b: &[Ca]) -> bool {
    a.iter().all(|x| b.iter().any(|y| y.der == x.der))
        && b.iter().all(|y| a.iter().any(|x| x.der == y.der))
}

fn leaf_problem(now: i64, leaf: Option<&Leaf>, policy: &Policy) -> Option<&'static str> {
    match leaf {
        None => Some("no usable serving certificate in the Secret"),
        Some(l) if !l.trusted => {
            Some("the serving certificate is not valid under the current CA for every name")
        }
        Some(l) if now >= l.not_after - policy.leaf_renew_before => {
            Some("the serving certificate is near its end")
        }
        Some(_) => None,
    }
}

fn next_check(now: i64, stored: &Stored, policy: &Policy) -> i64 {
    let leaf = stored
        .leaf
        .as_ref()
        .map_or(now, |l| l.not_after - policy.leaf_renew_before);
    let ca = stored.signer.not_after - policy.ca_renew_before;
    let drop = stored
        .bundle
        .iter()
        .filter(|c| c.der != stored.signer.der)
        .map(|c| c.not_after);
    drop.chain([leaf, ca]).min().unwrap_or(now).max(now + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const YEAR: i64 = 365 * DAY;
    const POLICY: Policy = Policy {
        ca_validity: 5 * YEAR,
        ca_renew_before: YEAR,
        leaf_validity: YEAR,
        leaf_renew_before: 90 * DAY,
    };

    fn ca(id: u8, not_after: i64) -> Ca {
        Ca {
            pem: format!("CA {id}"),
            der: vec![id],
            not_after,
        }
    }

    fn usable(signer: &Ca, bundle: &[&Ca], leaf: Option<Leaf>) -> SecretState {
        SecretState::Usable(Stored {
            signer: signer.clone(),
            bundle: bundle.iter().map(|&c| c.clone()).collect(),
            leaf,
        })
    }

    fn leaf(not_after: i64) -> Option<Leaf> {
        Some(Leaf {
            not_after,
            trusted: true,
        })
    }

    #[test]
    fn fresh_install_generates_everything() {
        let step = plan(0, &SecretState::Absent, &[], &POLICY);
        assert_eq!(
            step,
            Step::Regenerate {
                keep: vec![],
                reason: "no Secret".into()
            }
        );
    }

    #[test]
    fn valid_secret_and_bundle_need_nothing() {
        let a = ca(1, 5 * YEAR);
        let secret = usable(&a, &[&a], leaf(YEAR));
        let step = plan(DAY, &secret, &[vec![a.clone()], vec![a.clone()]], &POLICY);
        assert_eq!(
            step,
            Step::Done {
                next_check: YEAR - 90 * DAY
            }
        );
    }

    #[test]
    fn bundle_missing_from_a_webhook_is_written_before_anything_else() {
        let a = ca(1, 5 * YEAR);
        let secret = usable(&a, &[&a], None);
        let step = plan(DAY, &secret, &[vec![a.clone()], vec![]], &POLICY);
        assert_eq!(step, Step::WebhookBundle(vec![a]));
    }

    #[test]
    fn no_webhook_configuration_yet_still_issues_the_leaf() {
        let a = ca(1, 5 * YEAR);
        let step = plan(DAY, &usable(&a, &[&a], None), &[], &POLICY);
        assert!(matches!(step, Step::IssueLeaf { .. }), "{step:?}");
    }

    #[test]
    fn leaf_near_expiry_is_reissued_from_the_same_ca() {
        let a = ca(1, 5 * YEAR);
        let secret = usable(&a, &[&a], leaf(YEAR));
        let step = plan(YEAR - 89 * DAY, &secret, &[vec![a.clone()]], &POLICY);
        assert_eq!(
            step,
            Step::IssueLeaf {
                reason: "the serving certificate is near its end"
            }
        );
    }

    #[test]
    fn untrusted_leaf_is_reissued() {
        let a = ca(1, 5 * YEAR);
        let bad = Some(Leaf {
            not_after: YEAR,
            trusted: false,
        });
        let step = plan(DAY, &usable(&a, &[&a], bad), &[vec![a.clone()]], &POLICY);
        assert!(matches!(step, Step::IssueLeaf { .. }), "{step:?}");
    }

    #[test]
    fn ca_near_expiry_rotates_keeping_the_old_ca() {
        let a = ca(1, 5 * YEAR);
        let secret = usable(&a, &[&a], leaf(5 * YEAR - DAY));
        let step = plan(4 * YEAR + DAY, &secret, &[vec![a.clone()]], &POLICY);
        assert_eq!(step, Step::RotateCa { keep: vec![a] });
    }

    /// After the rotation the Secret holds the new CA and the old leaf: the webhooks get both
    /// CAs before the leaf is reissued from the new one.
    #[test]
    fn after_rotation_both_cas_reach_the_webhooks_before_the_new_leaf() {
        let now = 4 * YEAR + DAY;
        let old = ca(1, 5 * YEAR);
        let new = ca(2, now + 5 * YEAR);
        let old_leaf = Some(Leaf {
            not_after: 5 * YEAR - DAY,
            trusted: false,
        });
        let secret = usable(&new, &[&new, &old], old_leaf);
        let step = plan(now, &secret, &[vec![old.clone()]], &POLICY);
        assert_eq!(step, Step::WebhookBundle(vec![new.clone(), old.clone()]));

        let both = vec![new.clone(), old.clone()];
        let step = plan(now, &secret, &[both.clone(), both], &POLICY);
        assert!(matches!(step, Step::IssueLeaf { .. }), "{step:?}");
    }

    #[test]
    fn expired_old_ca_is_dropped_from_the_secret_then_the_webhooks() {
        let old = ca(1, 5 * YEAR);
        let new = ca(2, 9 * YEAR);
        let now = 5 * YEAR + 1;
        let secret = usable(&new, &[&old, &new], leaf(6 * YEAR));
        let both = vec![old.clone(), new.clone()];
        let step = plan(now, &secret, std::slice::from_ref(&both), &POLICY);
        assert_eq!(step, Step::SecretBundle(vec![new.clone()]));

        let secret = usable(&new, &[&new], leaf(6 * YEAR));
        let step = plan(now, &secret, &[both], &POLICY);
        assert_eq!(step, Step::WebhookBundle(vec![new]));
    }

    #[test]
    fn old_ca_is_kept_until_it_expires() {
        let old = ca(1, 5 * YEAR);
        let new = ca(2, 9 * YEAR);
        let secret = usable(&new, &[&new, &old], leaf(5 * YEAR + 200 * DAY));
        let both = vec![new.clone(), old.clone()];
        let step = plan(4 * YEAR + 10 * DAY, &secret, &[both], &POLICY);
        assert_eq!(
            step,
            Step::Done {
                next_check: 5 * YEAR
            }
        );
    }

    #[test]
    fn corrupt_secret_regenerates_keeping_valid_cas_from_both_places() {
        let now = DAY;
        let in_secret = ca(1, 5 * YEAR);
        let in_webhook = ca(2, 3 * YEAR);
        let expired = ca(3, now - 1);
        let secret = SecretState::Unusable {
            reason: "ca.key: not PEM".into(),
            readable: vec![in_secret.clone(), expired.clone()],
        };
        let webhooks = [vec![in_webhook.clone(), expired], vec![in_secret.clone()]];
        let step = plan(now, &secret, &webhooks, &POLICY);
        assert_eq!(
            step,
            Step::Regenerate {
                keep: vec![in_secret, in_webhook],
                reason: "ca.key: not PEM".into()
            }
        );
    }

    #[test]
    fn deleted_secret_regenerates_keeping_the_webhooks_bundle() {
        let a = ca(1, 5 * YEAR);
        let step = plan(DAY, &SecretState::Absent, &[vec![a.clone()]], &POLICY);
        assert_eq!(
            step,
            Step::Regenerate {
                keep: vec![a],
                reason: "no Secret".into()
            }
        );
    }

    #[test]
    fn bundle_order_does_not_matter() {
        let a = ca(1, 5 * YEAR);
        let b = ca(2, 4 * YEAR);
        let secret = usable(&a, &[&b, &a], leaf(YEAR));
        let step = plan(DAY, &secret, &[vec![b.clone(), a.clone()]], &POLICY);
        assert!(matches!(step, Step::Done { .. }), "{step:?}");
    }
}
