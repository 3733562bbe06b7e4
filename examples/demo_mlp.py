"""A tiny torch MLP on synthetic regression data: the default sweep's trial program.

Reads its params from argv (W&B's ``${args}``: ``--lr=0.01 --hidden=32``), reports the
validation loss once per epoch (Hyperband's unit), and uses CUDA when there is one.
"""

import argparse

import torch
from torch import nn

from gpusweep import trial


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def make_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 16, generator=generator)
    w = torch.linspace(-1.0, 1.0, 16)
    y = torch.sin(x @ w).unsqueeze(1) + 0.1 * torch.randn(n, 1, generator=generator)
    return x, y


def main() -> None:
    args = parse()
    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    generator = torch.Generator().manual_seed(args.seed)
    x_train, y_train = make_data(4096, generator)
    x_val, y_val = make_data(1024, generator)
    x_train, y_train, x_val, y_val = (t.to(device) for t in (x_train, y_train, x_val, y_val))
    model = nn.Sequential(nn.Linear(16, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 1))
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.MSELoss()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), device=device)
        for start in range(0, len(order), args.batch_size):
            index = order[start:start + args.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_train[index]), y_train[index])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = loss_fn(model(x_val), y_val).item()
        trial.report(step=epoch, val_loss=val_loss, train_loss=loss.item())
        print(f"epoch {epoch} val_loss {val_loss:.4f}", flush=True)


if __name__ == "__main__":
    with trial.session():
        main()
