//! Stage 2 of InstructGPT: supervised fine-tuning (SFT) on demonstrations.
//!
//! Each demonstration becomes the sequence prompt ++ response ++ EOS, with no template
//! added, and the loss is the next-token loss on the response and its EOS, and, when the
//! prompt is a conversation, on the content of each of the assistant's earlier turns in
//! it: every assistant turn of a multi-turn demonstration is trained. The rest of the
//! prompt (system and user messages, role headers, the blank lines between messages) and
//! the padding are masked.

use crate::checkpoint::LanguageModel;
use crate::data::Demonstration;
use crate::lm_loop::{self, Example, LoopReport};
use crate::tokenizer::Tokenizer;
use crate::train::{RunDir, TrainError};

/// SFT's settings: declared in the run contract.
pub use spec::SftConfig;

/// prompt ++ response ++ EOS with the loss on the response, its EOS and the content of
/// each of the assistant's earlier turns in the prompt (`d.assistant_turns`).
///
/// The prompt is encoded in pieces cut where each earlier turn's header and content
/// begin and end, as sampling encodes a prompt and then generates the turn after it, so no
/// token straddles a role header and a turn's content; the text is the prompt's, unchanged.
/// An earlier turn's loss stops with its content: the blank line after it is the
/// template's separator after every role, while the turn a model answers ends with EOS.
///
/// A sequence longer than the context loses tokens from the left, as a long prompt
/// always has; an earlier turn whose header is cut is kept as context with no loss, so no
/// turn is trained without its whole header before it. A response that cannot fit is an
/// error naming the demonstration, and so is a turn outside its prompt.
pub fn example(
    tokenizer: &Tokenizer,
    n_ctx: i64,
    index: usize,
    d: &Demonstration,
) -> Result<Example, TrainError> {
    let mut response = tokenizer.encode(&d.response);
    response.push(tokenizer.eos_id());
    let n_ctx = n_ctx as usize;
    if response.len() >= n_ctx {
        return Err(TrainError::Config(format!(
            "demonstration {} has a response of {} tokens; with EOS it does not fit the context of {n_ctx}",
            index + 1,
            response.len() - 1
        )));
    }
    let mut ids = Vec::new();
    let mut loss_mask = Vec::new();
    let mut push = |text: &str, trained: bool| {
        let tokens = tokenizer.encode(text);
        loss_mask.extend(std::iter::repeat_n(trained, tokens.len()));
        ids.extend(tokens);
        ids.len()
    };
    // Each earlier turn's tokens: where its header starts and where its content lies.
    let mut turns = Vec::with_capacity(d.assistant_turns.len());
    let mut cursor = 0;
    for (n, turn) in d.assistant_turns.iter().enumerate() {
        let pieces = (
            d.prompt.get(cursor..turn.header.start),
            d.prompt.get(turn.header.clone()),
            d.prompt.get(turn.content.clone()),
        );
        let (Some(before), Some(header), Some(content)) = pieces else {
            return Err(TrainError::Config(format!(
                "demonstration {}: assistant turn {} (header {:?}, content {:?}) is not within its prompt of {} bytes, after the turn before it",
                index + 1,
                n + 1,
                turn.header,
                turn.content,
                d.prompt.len()
            )));
        };
        if turn.header.end != turn.content.start {
            return Err(TrainError::Config(format!(
                "demonstration {}: assistant turn {}'s content does not follow its header",
                index + 1,
                n + 1
            )));
        }
        let header_start = push(before, false);
        let content_start = push(header, false);
        let content_end = push(content, true);
        turns.push((header_start, content_start..content_end));
        cursor = turn.content.end;
    }
    push(&d.prompt[cursor..], false);
    loss_mask.extend(std::iter::repeat_n(true, response.len()));
    ids.extend(response);

    let overflow = ids.len().saturating_sub(n_ctx);
    for (header_start, content) in turns {
        if header_start < overflow {
            loss_mask[content].fill(false);
        }
    }
    ids.drain(..overflow);
    loss_mask.drain(..overflow);
    Ok(Example { ids, loss_mask })
}

pub type SftReport = LoopReport;

/// Fine-tunes `model` on `demonstrations`, validating on `validation` (or on a held-out
/// share of the demonstrations when it is empty). The best weights by validation loss
/// are saved into `run.path()` and returned.
pub fn train(
    cfg: &SftConfig,
    model: LanguageModel,
    demonstrations: &[Demonstration],
    validation: &[Demonstration],
    run: &mut RunDir,
) -> Result<(LanguageModel, SftReport), TrainError> {
    cfg.validate()?;
    let width = model.config.n_embd;
    let model = model.with_dropout(cfg.dropout(width))?;
    let encode = |items: &[Demonstration]| -> Result<Vec<Example>, TrainError> {
        items.iter().enumerate().map(|(i, d)| example(&model.tokenizer, model.config.n_ctx, i, d)).collect()
    };
    let (train_set, val_set) = if validation.is_empty() {
        lm_loop::split_validation(&encode(demonstrations)?, cfg.val_fraction, cfg.seed)
    } else {
        (encode(demonstrations)?, encode(validation)?)
    };
    let settings =
        lm_loop::loop_settings!(cfg, "sft", examples: train_set.len(), keep_best: true, lr: cfg.lr(width));
    lm_loop::run(&settings, model, &train_set, &val_set, run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::TokenizerKind;
    use spec::chat::{Conversation, Message, Role};

    #[test]
    fn the_loss_covers_the_response_and_eos_only() {
        let t = Tokenizer::new(TokenizerKind::Bytes);
        let d = Demonstration::new("ab", "c");
        let e = example(&t, 256, 0, &d).unwrap();
        assert_eq!(e.ids, vec![97, 98, 99, 256]);
        assert_eq!(e.loss_mask, vec![false, false, true, true]);
    }

    #[test]
    fn a_long_prompt_loses_its_beginning() {
        let t = Tokenizer::new(TokenizerKind::Bytes);
        let d = Demonstration::new("abcdef", "xy");
        let e = example(&t, 5, 0, &d).unwrap();
        assert_eq!(e.ids, vec![101, 102, 120, 121, 256]);
        let too_long = Demonstration::new("a", "wxyz");
        let err = example(&t, 5, 2, &too_long).unwrap_err().to_string();
        assert!(err.contains("demonstration 3"), "{err}");
    }

    /// System, user, assistant, user, and the assistant's answer.
    fn three_turns() -> Demonstration {
        let conversation = Conversation::parse(vec![
            Message::new(Role::System, "Be brief."),
            Message::new(Role::User, "Hi"),
            Message::new(Role::Assistant, "Hello!"),
            Message::new(Role::User, "Bye"),
        ])
        .unwrap();
        Demonstration::of_conversation(&conversation, "Bye now.")
    }

    const RENDERED: &str =
        "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: Bye\n\nAssistant: Bye now.";

    /// The byte ranges of `text` that hold each of `parts`, found in order.
    fn spans(text: &str, parts: &[&str]) -> Vec<std::ops::Range<usize>> {
        let mut from = 0;
        parts
            .iter()
            .map(|part| {
                let start = from + text[from..].find(part).unwrap();
                from = start + part.len();
                start..from
            })
            .collect()
    }

    #[test]
    fn every_assistant_turn_of_a_conversation_is_trained_and_nothing_else() {
        let t = Tokenizer::new(TokenizerKind::Bytes);
        let e = example(&t, 256, 0, &three_turns()).unwrap();
        // Bytes: token i is byte i of the rendered conversation, then EOS.
        let mut expected_ids: Vec<i64> = RENDERED.bytes().map(i64::from).collect();
        expected_ids.push(t.eos_id());
        assert_eq!(e.ids, expected_ids, "the text is the template's, unchanged");
        let contents = spans(RENDERED, &["Assistant: Hello!", "Assistant: Bye now."])
            .into_iter()
            .map(|s| s.start + "Assistant: ".len()..s.end)
            .collect::<Vec<_>>();
        assert_eq!(contents.iter().map(|s| &RENDERED[s.clone()]).collect::<Vec<_>>(), ["Hello!", "Bye now."]);
        let expected: Vec<bool> = (0..RENDERED.len())
            .map(|i| contents.iter().any(|s| s.contains(&i)))
            .chain([true]) // EOS ends the answer
            .collect();
        for (i, (&got, &want)) in e.loss_mask.iter().zip(&expected).enumerate() {
            let at = RENDERED.get(i..i + 1).unwrap_or("EOS");
            assert_eq!(got, want, "token {i} ({at:?})");
        }
        assert_eq!(e.loss_mask.len(), expected.len());
    }

    /// The trained tokens, decoded run by run.
    fn trained_runs(t: &Tokenizer, e: &Example) -> Vec<String> {
        let mut runs: Vec<Vec<i64>> = Vec::new();
        for (i, (&id, &trained)) in e.ids.iter().zip(&e.loss_mask).enumerate() {
            match (trained, i > 0 && e.loss_mask[i - 1]) {
                (true, true) => runs.last_mut().unwrap().push(id),
                (true, false) => runs.push(vec![id]),
                _ => {}
            }
        }
        runs.iter().map(|r| t.decode_bytes(r)).map(|b| String::from_utf8(b).unwrap()).collect()
    }

    #[test]
    fn with_gpt2_no_trained_token_straddles_a_header_and_the_text_is_unchanged() {
        let t = Tokenizer::new(TokenizerKind::Gpt2);
        let e = example(&t, 1024, 0, &three_turns()).unwrap();
        assert_eq!(e.ids.last(), Some(&t.eos_id()));
        let text = String::from_utf8(t.decode_bytes(&e.ids[..e.ids.len() - 1])).unwrap();
        assert_eq!(text, RENDERED);
        assert_eq!(trained_runs(&t, &e), ["Hello!", "Bye now."]);
    }

    #[test]
    fn a_cut_conversation_trains_an_earlier_turn_only_with_its_whole_header() {
        let t = Tokenizer::new(TokenizerKind::Bytes);
        let d = three_turns();
        let whole = RENDERED.len() + 1;
        let header = RENDERED.find("Assistant: Hello!").unwrap();
        // Cut right before the first turn's header: it is still trained.
        let e = example(&t, (whole - header) as i64, 0, &d).unwrap();
        assert!(e.ids.starts_with(&[b'A' as i64]));
        assert_eq!(trained_runs(&t, &e), ["Hello!", "Bye now."]);
        // One byte of its header cut: the turn is context only.
        let e = example(&t, (whole - header - 1) as i64, 0, &d).unwrap();
        assert_eq!(trained_runs(&t, &e), ["Bye now."]);
        assert_eq!(t.decode(&e.ids[..e.ids.len() - 1]), &RENDERED[header + 1..]);
    }

    #[test]
    fn an_assistant_turn_outside_its_prompt_names_the_demonstration() {
        let t = Tokenizer::new(TokenizerKind::Bytes);
        let mut d = three_turns();
        d.assistant_turns[0].content.end = d.prompt.len() + 3;
        let err = example(&t, 256, 4, &d).unwrap_err().to_string();
        assert!(err.contains("demonstration 5: assistant turn 1 (header"), "{err}");
    }
}

#[cfg(test)]
mod learning_tests {
    use super::*;
    use crate::sampling::{generate, SamplingConfig};
    use crate::train::temp_run;
    use spec::chat::{Conversation, Message, Role};

    fn tiny_model(seed: i64) -> LanguageModel {
        crate::checkpoint::small_byte_model(seed, (2, 4, 64, 32))
    }

    /// "abc>" → "ABC": a skill a base model cannot know.
    fn uppercase_demos(n: usize, seed: u64) -> Vec<Demonstration> {
        let words = crate::checkpoint::random_words(n, seed, 2..=4, b'a'..=b'h');
        words.into_iter().map(|word| Demonstration::new(format!("{word}>"), word.to_uppercase())).collect()
    }

    fn accuracy(model: &LanguageModel, demos: &[Demonstration]) -> f64 {
        let prompts: Vec<Vec<i64>> = demos.iter().map(|d| model.tokenizer.encode(&d.prompt)).collect();
        let cfg = SamplingConfig { max_new_tokens: 6, temperature: 0.0, ..Default::default() };
        let samples = generate(model, &prompts, &cfg).unwrap();
        let correct = samples
            .iter()
            .zip(demos)
            .filter(|(s, d)| s.stopped_at_eos && model.tokenizer.decode(&s.ids) == d.response)
            .count();
        correct as f64 / demos.len() as f64
    }

    fn config(steps: i64) -> SftConfig {
        SftConfig {
            steps: Some(steps),
            lr: Some(3e-3),
            batch_size: 32,
            dropout: Some(0.0),
            eval_every: 0,
            checkpoint_every: 0,
            warmup_steps: 10,
            final_lr_ratio: 0.1,
            ..Default::default()
        }
    }

    #[test]
    fn sft_lifts_held_out_accuracy_far_above_the_base() {
        let train_set = uppercase_demos(512, 1);
        let held_out: Vec<Demonstration> =
            uppercase_demos(64, 2).into_iter().filter(|d| !train_set.contains(d)).collect();
        let base = tiny_model(0);
        let before = accuracy(&base, &held_out);
        let (dir, mut run) = temp_run();
        let (tuned, report) = train(&config(250), base, &train_set, &held_out, &mut run).unwrap();
        let after = accuracy(&tuned, &held_out);
        eprintln!("held-out exact match: base {before:.2} → SFT {after:.2}; {report:?}");
        assert!(before < 0.05, "the base already solves it: {before}");
        assert!(after > 0.8, "SFT reached only {after}");
        assert!(dir.path().join("model.safetensors").exists());
        assert!(std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap().contains("loss/sft"));
    }

    fn user(content: &str) -> Conversation {
        Conversation::parse(vec![Message::new(Role::User, content)]).unwrap()
    }

    /// "User: abc / Assistant: ABC / User: again / Assistant: done": the uppercase skill
    /// is shown only in the first assistant turn, never in the answer.
    fn two_turn_demos(words: &[String]) -> Vec<Demonstration> {
        words
            .iter()
            .map(|word| {
                let mut messages = user(word).messages().to_vec();
                messages.push(Message::new(Role::Assistant, word.to_uppercase()));
                messages.push(Message::new(Role::User, "again"));
                Demonstration::of_conversation(&Conversation::parse(messages).unwrap(), "done")
            })
            .collect()
    }

    /// Share of `words` whose one-turn conversation the model answers, greedily, with the
    /// word in capitals.
    fn first_turn_accuracy(model: &LanguageModel, words: &[String]) -> f64 {
        let prompts: Vec<Vec<i64>> =
            words.iter().map(|w| model.tokenizer.encode(&user(w).render())).collect();
        let cfg = SamplingConfig { max_new_tokens: 4, temperature: 0.0, ..Default::default() };
        let samples = generate(model, &prompts, &cfg).unwrap();
        let correct = samples
            .iter()
            .zip(words)
            .filter(|(s, w)| model.tokenizer.decode(&s.ids).starts_with(&w.to_uppercase()))
            .count();
        correct as f64 / words.len() as f64
    }

    #[test]
    fn sft_learns_a_skill_shown_only_in_earlier_assistant_turns() {
        let words = crate::checkpoint::random_words(512, 11, 2..=4, b'a'..=b'h');
        let held_out: Vec<String> = crate::checkpoint::random_words(64, 12, 2..=4, b'a'..=b'h')
            .into_iter()
            .filter(|w| !words.contains(w))
            .collect();
        let (train_set, val_set) = (two_turn_demos(&words), two_turn_demos(&held_out));
        let model = || crate::checkpoint::small_byte_model(0, (2, 4, 64, 64));
        let before = first_turn_accuracy(&model(), &held_out);

        let (_dir, mut run) = temp_run();
        let (tuned, _) = train(&config(400), model(), &train_set, &val_set, &mut run).unwrap();
        let after = first_turn_accuracy(&tuned, &held_out);

        // The same conversations with only the answer trained, as SFT once did.
        let answers_only = |demos: &[Demonstration]| -> Vec<Demonstration> {
            demos.iter().map(|d| Demonstration { assistant_turns: Vec::new(), ..d.clone() }).collect()
        };
        let (_dir, mut run) = temp_run();
        let (final_only, _) =
            train(&config(400), model(), &answers_only(&train_set), &answers_only(&val_set), &mut run)
                .unwrap();
        let without = first_turn_accuracy(&final_only, &held_out);

        eprintln!("held-out first turns in capitals: base {before:.2}, final turn only {without:.2}, every turn {after:.2}");
        assert!(before < 0.05, "the base already does it: {before}");
        assert!(without < 0.2, "the skill is learnt from the answers alone: {without}");
        assert!(after > 0.8, "SFT on every assistant turn reached only {after}");
    }

    #[test]
    fn resuming_mid_run_equals_an_uninterrupted_run() {
        let demos = uppercase_demos(64, 3);
        let mut cfg = config(12);
        cfg.checkpoint_every = 6;
        cfg.dropout = Some(0.1); // dropout masks must repeat too
        let full_dir = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(full_dir.path(), false).unwrap();
        let (full, _) = train(&cfg, tiny_model(5), &demos, &demos[..8], &mut run).unwrap();

        // A run that died after step 6: only its checkpoint is left.
        let resumed_dir = tempfile::tempdir().unwrap();
        let checkpoints = resumed_dir.path().join(crate::train::CHECKPOINTS);
        std::fs::create_dir_all(&checkpoints).unwrap();
        let from = full_dir.path().join(crate::train::CHECKPOINTS).join("step-00000006");
        let to = checkpoints.join("step-00000006");
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
        let mut run = RunDir::open(resumed_dir.path(), true).unwrap();
        let (resumed, _) = train(&cfg, tiny_model(99), &demos, &demos[..8], &mut run).unwrap();

        let (a, b) = (full.vs.variables(), resumed.vs.variables());
        let max_diff =
            a.iter().map(|(k, v)| f64::try_from((v - &b[k]).abs().max()).unwrap()).fold(0.0, f64::max);
        assert!(max_diff < 1e-5, "resumed weights differ by {max_diff}");
    }

    fn logged_steps(dir: &std::path::Path) -> Vec<i64> {
        let metrics = std::fs::read_to_string(dir.join(crate::train::METRICS)).unwrap();
        metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_i64().unwrap())
            .collect()
    }

    #[test]
    fn a_run_resumed_before_its_first_checkpoint_logs_each_step_once() {
        let demos = uppercase_demos(16, 6);
        let cfg = SftConfig { batch_size: 8, ..config(4) };
        let dir = tempfile::tempdir().unwrap();
        // A run killed before its first checkpoint: it had logged steps 0 to 2.
        let mut run = RunDir::open(dir.path(), false).unwrap();
        for step in 0..3 {
            run.log(step, &[("loss/sft", 9.0)]).unwrap();
        }
        drop(run);
        let mut run = RunDir::open(dir.path(), true).unwrap();
        train(&cfg, tiny_model(0), &demos, &demos[..4], &mut run).unwrap();
        assert_eq!(logged_steps(dir.path()), vec![0, 1, 2, 3], "it started over, so its old lines go");
    }

    /// The worker stores a run's newest checkpoint in the artifact store, and a run
    /// resumed on another machine starts from a copy of it in a fresh directory: it must
    /// still end with the weights of its best step.
    #[test]
    fn a_run_resumed_elsewhere_from_its_stored_checkpoint_keeps_its_best_step() {
        let demos = uppercase_demos(64, 7);
        // Validation wants digits, which training never shows: the more SFT learns, the
        // worse it does there, so the best step comes before the checkpoint.
        let contrary: Vec<Demonstration> =
            demos[..8].iter().map(|d| Demonstration::new(d.prompt.clone(), "0123456789")).collect();
        let cfg = SftConfig { eval_every: 1, checkpoint_every: 6, ..config(12) };
        let whole = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(whole.path(), false).unwrap();
        let (full, full_report) = train(&cfg, tiny_model(5), &demos, &contrary, &mut run).unwrap();
        assert!(
            full_report.kept_step < 6,
            "the best step {} is not before the checkpoint",
            full_report.kept_step
        );

        let store = registry::artifacts::ArtifactStore::new(whole.path().join("store")).unwrap();
        let step_6 = std::path::Path::new(crate::train::CHECKPOINTS).join("step-00000006");
        let stored = store.put_dir(&whole.path().join(&step_6)).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        store.fetch_to(&stored.sha256, &elsewhere.path().join(&step_6)).unwrap();
        let mut run = RunDir::open(elsewhere.path(), true).unwrap();
        let (resumed, report) = train(&cfg, tiny_model(99), &demos, &contrary, &mut run).unwrap();

        assert_eq!(report.kept_step, full_report.kept_step);
        let (a, b) = (full.vs.variables(), resumed.vs.variables());
        let max_diff =
            a.iter().map(|(k, v)| f64::try_from((v - &b[k]).abs().max()).unwrap()).fold(0.0, f64::max);
        assert!(max_diff < 1e-5, "the resumed run's final weights differ by {max_diff}");
    }

    #[test]
    fn a_nan_loss_stops_the_run_and_names_the_step() {
        let demos = uppercase_demos(32, 4);
        let cfg = SftConfig { lr: Some(1e30), ..config(20) };
        let (_dir, mut run) = temp_run();
        let err = train(&cfg, tiny_model(0), &demos, &demos[..4], &mut run).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, TrainError::NonFinite { .. }), "{text}");
        assert!(text.starts_with("step ") && text.contains("training stopped"), "{text}");
    }
}
