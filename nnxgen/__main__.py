from nnxgen.cli import main

main()
