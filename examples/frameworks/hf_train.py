"""An unmodified HuggingFace Trainer script with ``report_to=["wandb"]``.

A tiny BERT built from a config (nothing is downloaded) learns whether a sequence of random
tokens starts with an even one; ``eval_loss`` is reported once per epoch (W&B shows
it as ``eval/loss``).
"""

import argparse

import torch
from torch.utils.data import Dataset
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

parser = argparse.ArgumentParser()
parser.add_argument("--learning_rate", type=float, default=1e-3)
parser.add_argument("--epochs", type=int, default=4)
parser.add_argument("--output_dir", default="hf-out")
args = parser.parse_args()


class EvenTokens(Dataset):
    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 50, (n, 12), generator=generator)
        self.labels = (self.ids[:, 0] % 2 == 0).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long),
                "labels": self.labels[i]}


torch.manual_seed(0)
config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=16, num_labels=2)
training = TrainingArguments(output_dir=args.output_dir, report_to=["wandb"],
                             learning_rate=args.learning_rate, num_train_epochs=args.epochs,
                             per_device_train_batch_size=16, eval_strategy="epoch",
                             logging_strategy="epoch", save_strategy="no", use_cpu=True,
                             disable_tqdm=True, seed=0)
trainer = Trainer(model=BertForSequenceClassification(config), args=training,
                  train_dataset=EvenTokens(256, 0), eval_dataset=EvenTokens(64, 1))
trainer.train()
