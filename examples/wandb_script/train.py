"""An ordinary W&B training script: it knows nothing about gpusweep.

It uses only ``wandb.init()``, ``wandb.config`` and ``wandb.log()``, exactly as a script
written for ``wandb agent``. Its params come from W&B's sweep param file
(``WANDB_SWEEP_PARAM_PATH``, which ``wandb.init()`` reads); the sweep's command passes no
argv. Run under gpusweep, its ``wandb.log()`` calls still reach the orchestrator (Hyperband
included) through the bootstrap the launcher puts on ``PYTHONPATH``.
"""

import torch
import wandb
from torch import nn

DEFAULTS = {"lr": 0.01, "hidden": 32, "batch_size": 32, "epochs": 6, "seed": 0}


def make_data(n, generator):
    x = torch.randn(n, 16, generator=generator)
    w = torch.linspace(-1.0, 1.0, 16)
    y = torch.sin(x @ w).unsqueeze(1) + 0.1 * torch.randn(n, 1, generator=generator)
    return x, y


def main():
    run = wandb.init(config=DEFAULTS)
    config = wandb.config
    torch.manual_seed(config.seed)
    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    generator = torch.Generator().manual_seed(config.seed)
    x_train, y_train = (t.to(device) for t in make_data(16384, generator))
    x_val, y_val = (t.to(device) for t in make_data(2048, generator))
    model = nn.Sequential(nn.Linear(16, config.hidden), nn.ReLU(),
                          nn.Linear(config.hidden, 1)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = nn.MSELoss()
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(x_train), device=device)
        for start in range(0, len(order), config.batch_size):
            index = order[start:start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_train[index]), y_train[index])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = loss_fn(model(x_val), y_val).item()
        wandb.log({"epoch": epoch, "val_loss": val_loss, "train_loss": loss.item()})
        print(f"epoch {epoch} val_loss {val_loss:.4f}", flush=True)
    run.finish()


if __name__ == "__main__":
    main()
