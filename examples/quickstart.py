"""The README's first examples, run end to end."""

from minibatcher import DataLoader


def main() -> None:
    dl = DataLoader(range(15), batch_size=5, shuffle=True)
    print(f"seed={dl.seed}")
    for epoch in range(2):
        print(f"epoch {epoch}:", [batch.tolist() for batch in dl])
    pairs = list(enumerate("abcdefghijklmnopqrstuvwxyz"))
    for numbers, letters in DataLoader(pairs, batch_size=6, shuffle=True, seed=dl.seed):
        print(numbers.tolist(), letters)


if __name__ == "__main__":
    main()
