def main() -> None:
    from energyctl.prepare import pause_collection

    pause_collection()
    from energyctl.app import run

    run()


if __name__ == "__main__":
    main()
