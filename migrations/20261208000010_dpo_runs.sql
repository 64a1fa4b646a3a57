-- Direct preference optimisation: a run that trains an SFT policy on a rankings snapshot.
ALTER TYPE run_kind ADD VALUE IF NOT EXISTS 'dpo' AFTER 'ppo';
