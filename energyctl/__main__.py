def main() -> None:
    from energyctl.app import run

    run()


if __name__ == "__main__":
    main()
