from tossit.cli import main

main()
