"""Runs vault.bank with secrets on its command line too, and real SQLAlchemy look-alikes."""

import sys

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from vault import bank
from vault.markers import LOOK_ALIKES


def main():
    bank.run(sys.argv)
    engine = create_engine("sqlite://")
    with Session(engine) as session:
        transaction = session.begin()
        session.execute(text("select 1"))
        print(bank.lookalikes(session, transaction, **LOOK_ALIKES))
        transaction.rollback()
    print("done")


if __name__ == "__main__":
    main()
