from ._eddy import EddyError as EddyError
from ._eddy import Learner as Learner
from ._eddy import Pipeline as Pipeline
from ._eddy import Registry as Registry
from ._eddy import Server as Server
from ._eddy import __version__ as __version__
from ._eddy import learner as learner
from ._eddy import run as run
from ._eddy import serve as serve

Model = Pipeline
__all__: list[str]
