-- RLOO and GRPO: runs that train an SFT policy against a reward model on a prompts snapshot.
ALTER TYPE run_kind ADD VALUE IF NOT EXISTS 'rloo' AFTER 'dpo';
ALTER TYPE run_kind ADD VALUE IF NOT EXISTS 'grpo' AFTER 'rloo';
