from integration.app.cli import main

main()
