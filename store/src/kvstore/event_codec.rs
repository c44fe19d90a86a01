//! How event bodies are written to disk: zstd, with a dictionary trained on this store's own
//! events once there are enough of them.
//!
//! Events of one fleet repeat the same field names, paths, bundle ids and signing chains, so a
//! body compressed alone saves about half, while one compressed with a dictionary trained on
//! earlier bodies keeps about a tenth (measured by `cargo run -p dasher-store --example
//! event_size`). Each body still decodes on its own, so reads stay random-access.
//!
//! Owns: the body layout, the dictionaries (`m:edict` + id → seq at training + dictionary),
//! and when to train the next one (at [`FIRST_TRAINING`] events, then each time the event
//! sequence has grown [`GROWTH`]-fold, so the dictionary follows a young store's drift and
//! training stays rare: seven dictionaries by 16M events). Must never: rewrite a stored body, forget a dictionary a stored body names, or train
//! on the writer thread.
//!
//! Layouts (first byte): `{` plain JSON (stores written before compression), [`TAG_ZSTD`]
//! `len:u32` frame, [`TAG_ZSTD_DICT`] `dict:u32 len:u32` frame, where `len` is the JSON length.

use super::keys;
use crate::kv::{Direction, KvEngine};
use crate::{Result, StoreError};
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// zstd level of event bodies (fast; the dictionary does most of the work).
const LEVEL: i32 = 3;
/// Events stored before the first dictionary is trained.
pub const FIRST_TRAINING: u64 = 4_096;
/// The next dictionary is trained once the event sequence has grown this many times.
const GROWTH: u64 = 4;
/// Bodies sampled (newest first) to train a dictionary.
const SAMPLES: usize = 4_096;
/// Fewer samples than this (events pruned meanwhile) train nothing.
const MIN_SAMPLES: usize = 64;
/// Dictionary size in bytes.
const DICT_BYTES: usize = 32 * 1024;
/// Largest body a stored length may claim (a guard against corrupt headers).
const MAX_BODY: usize = 64 << 20;

const TAG_ZSTD: u8 = 1;
const TAG_ZSTD_DICT: u8 = 2;

struct Current {
    id: u32,
    encoder: EncoderDictionary<'static>,
}

/// A dictionary trained but not yet stored.
pub struct Trained {
    id: u32,
    /// The event sequence when it was trained.
    seq: u64,
    dict: Vec<u8>,
    encoder: EncoderDictionary<'static>,
}

impl Trained {
    /// The key and value that store it.
    pub fn record(&self) -> (Vec<u8>, Vec<u8>) {
        let mut value = self.seq.to_be_bytes().to_vec();
        value.extend_from_slice(&self.dict);
        (dict_key(self.id), value)
    }
}

/// Encoder and decoders of event bodies for one store.
pub struct EventCodec {
    current: RwLock<Option<Arc<Current>>>,
    decoders: RwLock<HashMap<u32, Arc<DecoderDictionary<'static>>>>,
    /// Train the next dictionary once the event sequence reaches this.
    next_training: AtomicU64,
    /// A training is running, or its dictionary waits to be stored.
    training: AtomicBool,
    trained: Mutex<Option<Arc<Trained>>>,
}

fn dict_key(id: u32) -> Vec<u8> {
    keys::key(keys::META_EVENT_DICT, &id.to_be_bytes())
}

fn zstd_err(what: &str) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Engine(format!("event body {what}: {e}"))
}

impl EventCodec {
    /// Loads the dictionaries stored in `engine`.
    pub fn load<E: KvEngine>(engine: &E) -> Result<Self> {
        let codec = EventCodec {
            current: RwLock::new(None),
            decoders: RwLock::new(HashMap::new()),
            next_training: AtomicU64::new(FIRST_TRAINING),
            training: AtomicBool::new(false),
            trained: Mutex::new(None),
        };
        let start = keys::META_EVENT_DICT;
        let end = keys::prefix_end(start).expect("prefix has a successor");
        let mut found = Vec::new();
        engine.scan((Bound::Included(start), Bound::Excluded(&end)), Direction::Forward, &mut |k, v| {
            found.push((k.to_vec(), v.to_vec()));
            true
        })?;
        for (k, v) in found {
            let id = k[start.len()..].try_into().map(u32::from_be_bytes).map_err(|_| keys::corrupt(&k, "dict id"))?;
            if v.len() < 8 {
                return Err(keys::corrupt(&k, "short dictionary record"));
            }
            let at = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
            codec.install(id, at, &v[8..]);
        }
        Ok(codec)
    }

    fn install(&self, id: u32, trained_at: u64, dict: &[u8]) {
        self.decoders.write().expect("codec lock").insert(id, Arc::new(DecoderDictionary::copy(dict)));
        let mut current = self.current.write().expect("codec lock");
        if current.as_ref().is_none_or(|c| c.id < id) {
            *current = Some(Arc::new(Current { id, encoder: EncoderDictionary::copy(dict, LEVEL) }));
            self.next_training.store(trained_at.saturating_mul(GROWTH).max(FIRST_TRAINING), Ordering::Relaxed);
        }
    }

    /// Encodes the stored JSON of a batch of events, with `trained` if given, else with the
    /// current dictionary (if any).
    pub fn encode_all(&self, bodies: impl Iterator<Item = Vec<u8>>, trained: Option<&Trained>) -> Vec<Vec<u8>> {
        let current = self.current.read().expect("codec lock").clone();
        let dict = match (trained, &current) {
            (Some(t), _) => Some((t.id, &t.encoder)),
            (None, Some(c)) => Some((c.id, &c.encoder)),
            (None, None) => None,
        };
        let compressor = match dict {
            Some((_, encoder)) => zstd::bulk::Compressor::with_prepared_dictionary(encoder),
            None => zstd::bulk::Compressor::new(LEVEL),
        };
        let mut compressor = compressor.expect("zstd context with a valid level and dictionary");
        bodies
            .map(|json| {
                let mut out = Vec::with_capacity(json.len() / 3 + 16);
                match dict {
                    Some((id, _)) => {
                        out.push(TAG_ZSTD_DICT);
                        out.extend_from_slice(&id.to_be_bytes());
                    }
                    None => out.push(TAG_ZSTD),
                }
                out.extend_from_slice(&(json.len() as u32).to_be_bytes());
                let frame = compressor.compress(&json).expect("zstd compresses into a growable buffer");
                out.extend_from_slice(&frame);
                out
            })
            .collect()
    }

    /// The JSON of a stored body (`key` names it in errors).
    pub fn decode(&self, key: &[u8], stored: &[u8]) -> Result<Vec<u8>> {
        let (dict, rest) = match stored.first() {
            Some(b'{') => return Ok(stored.to_vec()),
            Some(&TAG_ZSTD) => (None, &stored[1..]),
            Some(&TAG_ZSTD_DICT) if stored.len() >= 5 => {
                let id = u32::from_be_bytes(stored[1..5].try_into().expect("4 bytes"));
                let dict = self.decoders.read().expect("codec lock").get(&id).cloned();
                let dict = dict.ok_or_else(|| keys::corrupt(key, "body names an unknown compression dictionary"))?;
                (Some(dict), &stored[5..])
            }
            _ => return Err(keys::corrupt(key, "unknown event body layout")),
        };
        if rest.len() < 4 {
            return Err(keys::corrupt(key, "short event body"));
        }
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_BODY {
            return Err(keys::corrupt(key, "event body claims an impossible length"));
        }
        let mut d = match &dict {
            Some(dict) => zstd::bulk::Decompressor::with_prepared_dictionary(dict),
            None => zstd::bulk::Decompressor::new(),
        }
        .map_err(zstd_err("decompressor"))?;
        let json = d.decompress(&rest[4..], len).map_err(zstd_err("decompress"))?;
        if json.len() != len {
            return Err(keys::corrupt(key, "event body length does not match its header"));
        }
        Ok(json)
    }

    /// Claims the next training if the event sequence has reached it and none is running or
    /// waiting to be stored; the caller then runs [`EventCodec::train`] off the writer thread.
    pub fn claim_training(&self, seq: u64) -> bool {
        seq >= self.next_training.load(Ordering::Relaxed)
            && self.training.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// The JSON of the newest stored bodies, to train on.
    pub fn samples<E: KvEngine>(&self, engine: &E) -> Result<Vec<Vec<u8>>> {
        let end = keys::prefix_end(keys::EVENT).expect("prefix has a successor");
        let mut samples = Vec::with_capacity(SAMPLES);
        let mut failed = None;
        engine.scan((Bound::Included(keys::EVENT), Bound::Excluded(&end)), Direction::Reverse, &mut |k, v| {
            match self.decode(k, v) {
                Ok(json) => samples.push(json),
                Err(e) => failed = Some(e),
            }
            failed.is_none() && samples.len() < SAMPLES
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(samples),
        }
    }

    /// Trains the next dictionary on `samples` (CPU-heavy: run it on its own thread). The
    /// result waits in the codec until an insert takes it ([`EventCodec::take_trained`]) and
    /// stores it in the same commit as the first bodies that use it.
    pub fn train(&self, samples: &[Vec<u8>], seq: u64) {
        let dict = if samples.len() < MIN_SAMPLES {
            None
        } else {
            match zstd::dict::from_samples(samples, DICT_BYTES) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, "event body dictionary training failed; bodies stay compressed without one");
                    None
                }
            }
        };
        match dict {
            Some(dict) => {
                let id = self.current.read().expect("codec lock").as_ref().map_or(1, |c| c.id + 1);
                let encoder = EncoderDictionary::copy(&dict, LEVEL);
                *self.trained.lock().expect("codec lock") = Some(Arc::new(Trained { id, seq, dict, encoder }));
            }
            None => self.give_up(),
        }
    }

    /// Gives up this round of training (nothing to train on, or reading samples failed): the
    /// next one is tried once the sequence has grown again.
    pub fn give_up(&self) {
        let next = self.next_training.load(Ordering::Relaxed);
        self.next_training.store(next.saturating_mul(GROWTH), Ordering::Relaxed);
        self.training.store(false, Ordering::Release);
    }

    /// A trained dictionary not yet stored, for the next insert to store and use.
    pub fn take_trained(&self) -> Option<Arc<Trained>> {
        self.trained.lock().expect("codec lock").take()
    }

    /// After the insert that took `t`: committed (it becomes current) or not (it waits for
    /// the next insert).
    pub fn settle_trained(&self, t: Arc<Trained>, committed: bool) {
        if committed {
            self.install(t.id, t.seq, &t.dict);
            self.training.store(false, Ordering::Release);
        } else {
            *self.trained.lock().expect("codec lock") = Some(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::RedbEngine;

    fn body(i: usize) -> Vec<u8> {
        format!(r#"{{"machine_id":"M{i}","file_path":"/Applications/App{}.app/Contents/MacOS","pid":{i}}}"#, i % 7)
            .into_bytes()
    }

    #[test]
    fn bodies_round_trip_before_and_after_a_dictionary_and_plain_json_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let engine = RedbEngine::open(&dir.path().join("db")).unwrap();
        let codec = EventCodec::load(&engine).unwrap();
        let plain = body(0);
        assert_eq!(codec.decode(b"k", &plain).unwrap(), plain);
        let before = codec.encode_all((0..200).map(body), None);
        assert!(before.iter().all(|b| b[0] == TAG_ZSTD));
        let mut batch = crate::kv::WriteBatch::new();
        for (i, b) in before.iter().enumerate() {
            batch.put(keys::event_key(i as u64 + 1), b.clone());
            assert_eq!(codec.decode(b"k", b).unwrap(), body(i));
        }
        engine.write(&batch).unwrap();

        assert!(codec.claim_training(FIRST_TRAINING));
        assert!(!codec.claim_training(FIRST_TRAINING), "one training at a time");
        let samples = codec.samples(&engine).unwrap();
        assert_eq!(samples.len(), 200);
        codec.train(&samples, FIRST_TRAINING);
        let trained = codec.take_trained().expect("a dictionary from 200 samples");
        // Bodies encoded with a dictionary not yet stored: stored with it, then it is current.
        let after = codec.encode_all((200..205).map(body), Some(&trained));
        let mut batch = crate::kv::WriteBatch::new();
        let (key, value) = trained.record();
        batch.put(key, value);
        engine.write(&batch).unwrap();
        codec.settle_trained(trained, true);
        let after = [after, codec.encode_all((205..210).map(body), None)].concat();
        assert!(after.iter().all(|b| b[0] == TAG_ZSTD_DICT));
        assert!(!codec.claim_training(2 * FIRST_TRAINING), "next training waits for the sequence to grow");
        assert!(codec.claim_training(GROWTH * FIRST_TRAINING));

        // A fresh codec (a reopened store) reads bodies of every layout.
        let reopened = EventCodec::load(&engine).unwrap();
        for (i, b) in before.iter().chain(&after).enumerate() {
            assert_eq!(reopened.decode(b"k", b).unwrap(), body(i));
        }
        assert!(reopened.encode_all(std::iter::once(body(1)), None)[0][0] == TAG_ZSTD_DICT);
    }

    #[test]
    fn corrupt_bodies_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let engine = RedbEngine::open(&dir.path().join("db")).unwrap();
        let codec = EventCodec::load(&engine).unwrap();
        let good = codec.encode_all(std::iter::once(body(1)), None).remove(0);
        for bad in [
            vec![],
            vec![9, 1, 2],
            vec![TAG_ZSTD, 0, 0],
            vec![TAG_ZSTD_DICT, 0, 0, 0, 7, 0, 0, 0, 1, 0],
            [&[TAG_ZSTD, 0xFF, 0xFF, 0xFF, 0xFF][..], &good[5..]].concat(),
            [&good[..5], &good[5..good.len() - 3]].concat(),
        ] {
            assert!(codec.decode(b"k", &bad).is_err(), "{bad:?}");
        }
    }
}
