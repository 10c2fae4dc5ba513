def main() -> None:
    import sys

    from energyctl import fast_path, startup

    startup.pause_collection()
    code = fast_path.run(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from energyctl.app import run

    run()


if __name__ == "__main__":
    main()
