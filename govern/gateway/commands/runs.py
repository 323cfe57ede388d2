"""Training runs: the recipe that says how a run was trained."""

from __future__ import annotations

from govern.auth import Caller
from govern.events import RecipePut
from govern.gateway.commands.base import CommandBase
from govern.ledger.service import Tx
from govern.unlearning.recipes import RecipeBody, RecipeInfo

__all__ = ["RunCommands"]


class RunCommands(CommandBase):
    def put_recipe(self, caller: Caller, run_id: str, body: RecipeBody) -> RecipeInfo:
        """Register how a run was trained (its owner, or an admin)."""

        def change(tx: Tx) -> RecipeInfo:
            info = self._p.recipes.put(caller, run_id, body, self._p.settings.unlearning_trainers)
            tx.emit(
                RecipePut(
                    run_id=run_id, principal_id=info.principal_id, recipe=info.recipe.to_json()
                )
            )
            return info

        return self._transact(caller.id, change).value
