from dfl.cli import main

main()
