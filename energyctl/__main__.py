def main() -> None:
    from energyctl import startup

    startup.pause_collection()
    from energyctl.app import run

    run()


if __name__ == "__main__":
    main()
